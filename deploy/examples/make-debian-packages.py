#!/usr/bin/env python3
"""Writes debian-packages.jsonl (the RAG example's collection) from `apt-cache dumpavail` on a Debian machine:
well-known packages first, then others from main sections, one JSON line each:
{"id", "text" (name, summary and the first lines of the description), "package", "section"}.
Usage: apt-cache dumpavail | python3 deploy/examples/make-debian-packages.py > deploy/examples/debian-packages.jsonl"""

import json
import sys

WELL_KNOWN = """curl wget git vim emacs nano nginx apache2 gimp inkscape ffmpeg vlc python3 gcc make cmake rsync
openssh-server openssh-client tmux screen htop postgresql mariadb-server redis-server sqlite3 imagemagick
libreoffice firefox-esr thunderbird docker.io podman golang rustc cargo nodejs npm openjdk-17-jdk maven
gradle zip unzip p7zip-full tar gzip bzip2 xz-utils zstd jq ripgrep fd-find fzf tree ncdu iotop nmap
tcpdump wireshark iperf3 traceroute dnsutils whois netcat-openbsd socat openvpn wireguard-tools iptables
ufw fail2ban certbot haproxy squid bind9 isc-dhcp-server samba nfs-kernel-server cups sane-utils audacity
blender krita darktable shotwell pandoc texlive-latex-base graphviz gnuplot octave r-base sqlitebrowser
mutt neomutt irssi weechat transmission-cli aria2 youtube-dl mpv cmus sox lame flac exiftool pdftk
ghostscript poppler-utils tesseract-ocr calibre zathura evince keepassxc gnupg pass borgbackup restic
duplicity timeshift clamav lynis smartmontools hdparm parted gparted lvm2 mdadm cryptsetup btrfs-progs
ntfs-3g exfatprogs sshfs autossh mosh ansible puppet terraform vagrant qemu-system-x86 virt-manager
lxc strace ltrace gdb valgrind lsof sysstat dstat bpftrace perf-tools-unstable ansible-lint shellcheck
clang llvm nasm meson ninja-build autoconf automake libtool pkg-config flex bison swig doxygen sphinx-doc
mercurial subversion git-lfs tig meld kdiff3 diffutils patch dos2unix recode iconv moreutils parallel
pv bc units elinks w3m lynx links2 fetchmail postfix exim4 dovecot-imapd spamassassin
mailutils procmail memcached rabbitmq-server mosquitto elasticsearch influxdb grafana prometheus
zabbix-agent nagios4 munin collectd logrotate rsyslog cron anacron at chrony ntpsec openntpd""".split()

def packages(text):
    block = {}
    key = None
    for line in text.splitlines():
        if not line.strip():
            if block:
                yield block
            block, key = {}, None
        elif line[0].isspace() and key:
            block[key] += "\n" + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            block[key] = value.strip()
    if block:
        yield block

def main():
    seen = {}
    for p in packages(sys.stdin.read()):
        name = p.get("Package")
        if name and name not in seen and "Description" in p:
            seen[name] = p
    chosen = [n for n in WELL_KNOWN if n in seen]
    sections = ("utils", "net", "admin", "devel", "editors", "graphics", "sound", "video", "web", "mail",
                "database", "text", "vcs", "science", "games", "doc", "shells", "httpd", "interpreters")
    for name, p in sorted(seen.items()):
        if len(chosen) >= 600:
            break
        if name not in chosen and p.get("Section") in sections and not name.startswith("lib") and "-" not in name:
            chosen.append(name)
    for i, name in enumerate(chosen):
        p = seen[name]
        summary, _, rest = p["Description"].partition("\n")
        lines = [l for l in rest.split("\n") if l and l != "."][:3]
        text = f"{name}: {summary}. " + " ".join(lines)
        print(json.dumps({"id": i + 1, "text": text[:600], "package": name, "section": p.get("Section", "")}))

main()
