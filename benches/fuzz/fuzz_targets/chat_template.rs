//! A chat template (from a GGUF file's metadata) compiled and rendered over a conversation, both from the
//! input: templates run with fuel, so none may hang or panic the server.
#![no_main]

use ferroserve_models::llm::chat_template::ChatTemplate;
use ferroserve_models::llm::ChatMessage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // The template, then the messages' contents, separated by NUL.
    let mut parts = text.split('\0');
    let source = parts.next().unwrap_or_default();
    let Ok(template) = ChatTemplate::new(source, "<s>", "</s>") else { return };
    let roles = ["system", "user", "assistant"];
    let messages: Vec<ChatMessage> = parts
        .enumerate()
        .map(|(i, content)| ChatMessage { role: roles[i % 3].to_string(), content: content.to_string() })
        .collect();
    let _ = template.render(&messages, true);
});
