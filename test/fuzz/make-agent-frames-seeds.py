#!/usr/bin/env python3
"""Writes the seed corpora of fuzz_agent_frames and fuzz_sandbox_responses (test/fuzz/corpus/).

Input format of the target: one byte that picks the chunk size the reader is fed in
(1 + byte % 64), then the bytes from the guest: frames of
    u32 length (little-endian, bytes after the field) | u8 kind | body
(lib/agent/frame.hpp). The same bytes after the first are also parsed as one JSON message, so
a few seeds are bare JSON requests. Run from anywhere; rewrites the directory's seed_* files.
"""
import json
import pathlib
import struct

MESSAGE, STDIN, STDOUT, STDERR, FILE, END = 1, 2, 3, 4, 5, 6


def frame(kind, body):
    return struct.pack("<I", 1 + len(body)) + bytes([kind]) + body


def msg(obj):
    return frame(MESSAGE, json.dumps({"v": 1, **obj}, separators=(",", ":")).encode())


def end(kind):
    return frame(END, bytes([kind]))


seeds = {
    "pong": msg({"type": "pong", "agent_version": "0.1.0"}),
    "ok": msg({"type": "ok"}),
    "exit": msg({"type": "exit", "exit_code": 0, "signal": 0, "timed_out": False, "stdout_truncated": False,
                 "stderr_truncated": False, "duration_us": 1234}),
    "exit_killed": msg({"type": "exit", "exit_code": -1, "signal": 9, "timed_out": True, "stdout_truncated": True,
                        "stderr_truncated": False, "duration_us": 5000000}),
    "error": msg({"type": "error", "errno": 2, "message": "no such file"}),
    "error_base64": msg({"type": "error", "errno": 22, "message": {"base64": "/w=="}}),
    "stat": msg({"type": "stat", "file_type": "file", "size": 42, "mode": 420, "mtime_ns": 1700000000000000000}),
    "stat_dir": msg({"type": "stat", "file_type": "dir", "size": 0, "mode": 493, "mtime_ns": -1}),
    "listing": msg({"type": "listing", "entries": [["a", "file", 3], ["d", "dir", 0], ["l", "symlink", 1],
                                                   [{"base64": "gA=="}, "other", 0]], "truncated": False}),
    "exec_output": frame(STDOUT, b"hello\n") + frame(STDERR, b"warn\n") + end(STDOUT) + end(STDERR) +
                   msg({"type": "exit", "exit_code": 0, "signal": 0, "timed_out": False, "stdout_truncated": False,
                        "stderr_truncated": False, "duration_us": 10}),
    "file_read": frame(FILE, bytes(range(32))) + end(FILE) + msg({"type": "ok"}),
    "stdin_from_guest": frame(STDIN, b"x"),  # a frame the guest may not send
    "truncated": frame(STDOUT, b"abcdef")[:-2],
    "bad_version": frame(MESSAGE, b'{"v":2,"type":"ok"}'),
}
# Bare JSON requests, for the request parser the same bytes go through.
requests = {
    "req_exec": {"op": "exec", "argv": ["/bin/echo", "hi"], "env": {"A": "b"}, "cwd": "/", "timeout_ms": 1000,
                 "stdin": True, "max_output": 65536},
    "req_shell": {"op": "exec", "shell": {"base64": "ZWNobyBoaQ=="}},
    "req_init": {"op": "init", "entropy": {"base64": "AAECAw=="}, "hostname": "box"},
    "req_file": {"op": "file", "file_op": "rename", "path": "/a", "target": "/b", "mode": 420, "recursive": False},
    "req_ping": {"op": "ping"},
}

out = pathlib.Path(__file__).resolve().parent / "corpus" / "agent_frames"
out.mkdir(parents=True, exist_ok=True)
for old in out.glob("seed_*"):
    old.unlink()
for i, (name, body) in enumerate(seeds.items()):
    (out / f"seed_{name}").write_bytes(bytes([i * 7 % 64]) + body)
for name, req in requests.items():
    (out / f"seed_{name}").write_bytes(bytes([63]) + json.dumps({"v": 1, **req}, separators=(",", ":")).encode())

# fuzz_sandbox_responses reads the same guest bytes after three prefix bytes (chunk size, output
# cap, file cap): the response seeds with caps of 2368 and 16768 bytes.
sandbox = out.parent / "sandbox_responses"
sandbox.mkdir(parents=True, exist_ok=True)
for old in sandbox.glob("seed_*"):
    old.unlink()
for i, (name, body) in enumerate(seeds.items()):
    (sandbox / f"seed_{name}").write_bytes(bytes([i * 7 % 64, 64, 128]) + body)
