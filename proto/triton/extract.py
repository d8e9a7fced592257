#!/usr/bin/env python3
"""Writes proto/triton/triton.fds: the FileDescriptorSet of Triton's `model_config.proto` and
`grpc_service.proto` (package `inference`, service `GRPCInferenceService`: the KServe v2 gRPC protocol plus
Triton's extensions), as the tritonclient wheel ships them compiled into its `_pb2` modules (the wheel holds
no .proto text). Usage: pip install tritonclient[grpc]==2.63.0 && python3 proto/triton/extract.py"""

import pathlib

from google.protobuf import descriptor_pb2
from tritonclient.grpc import model_config_pb2, service_pb2

fds = descriptor_pb2.FileDescriptorSet()
for module in (model_config_pb2, service_pb2):
    fds.file.add().ParseFromString(module.DESCRIPTOR.serialized_pb)
out = pathlib.Path(__file__).with_name("triton.fds")
out.write_bytes(fds.SerializeToString())
print(f"wrote {out} ({out.stat().st_size} bytes)")
