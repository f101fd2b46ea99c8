"""Generation through an OpenAI-compatible server (a fake one on 127.0.0.1): evaluation answers and DELIA's
self-sampled cache, request shape, seeds, the system-prompt policy, retries after 500 and 429, caching, resume,
and the command lines."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from datawinnow.backends.generator_remote import RemoteGenerator, with_system
from datawinnow.backends.openai_http import EndpointError
from datawinnow.cache import stable_hash
from datawinnow.cli import main
from datawinnow.data import load, write
from datawinnow.data.record import Dataset, Record
from datawinnow.errors import ConfigError
from datawinnow.evaluate import EvalSession, GenerationParams, evaluate
from datawinnow.evaluate.generate import PromptTokenizer
from datawinnow.evaluate.icl import ICLExamples
from datawinnow.runtime.context import Context
from datawinnow.train.delia import build_cache

KEY = "sk-gen-SECRET-42"


def echo(body) -> str:
    """The fake model's answer: the last user turn, upper-cased, padded with spaces (the client strips them)."""
    return f"  ANSWER TO {body['messages'][-1]['content'][:40].upper()}  \n"


class FakeServer:
    """POST /v1/chat/completions: the next scripted status (500, 429 ...) if any, else a chat completion from
    ``echo``. Every request is recorded."""

    def __init__(self):
        self.script: list[int] = []
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                    status = server.script.pop(0) if server.script else 200
                if status == 200:
                    text = json.dumps({"choices": [{"message": {"role": "assistant", "content": echo(body)}}]})
                else:
                    text = json.dumps({"error": f"status {status}"})
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def server(monkeypatch):
    monkeypatch.setenv("DW_GEN_KEY", KEY)
    s = FakeServer()
    yield s
    s.close()


def generator_for(server, **kw) -> RemoteGenerator:
    opts = dict(api_key_env="DW_GEN_KEY", concurrency=3, timeout=5.0, max_retries=3, backoff=0.01)
    opts.update(kw)
    return RemoteGenerator(server.url, "served-model", **opts)


CONV = [{"role": "system", "content": "own persona"}, {"role": "user", "content": "name a colour"}]


def test_request_shape_seeds_system_policy_and_order(server):
    gen = generator_for(server)
    convs = [[{"role": "user", "content": f"question {i}"}] for i in range(5)]
    out = gen.answer(convs, max_new_tokens=9, temperature=0.7, top_p=0.9, seeds=[10, 11, 12, 13, 14])
    assert out == [f"ANSWER TO QUESTION {i}" for i in range(5)]  # input order, stripped
    bodies = sorted((r["body"] for r in server.requests), key=lambda b: b["seed"])
    assert bodies[0] == {"model": "served-model", "messages": convs[0], "max_tokens": 9, "temperature": 0.7,
                         "top_p": 0.9, "seed": 10}
    assert [b["seed"] for b in bodies] == [10, 11, 12, 13, 14]
    assert {r["path"] for r in server.requests} == {"/v1/chat/completions"}
    assert {r["auth"] for r in server.requests} == {f"Bearer {KEY}"}
    assert KEY not in gen.identity and KEY not in repr(gen) and gen.identity == f"remote:{server.url}/chat/completions|served-model"
    # system policy: None keeps the conversation, "" an empty system turn, a text replaces the record's own
    assert with_system(CONV, None) == CONV
    assert with_system(CONV, "") == [{"role": "system", "content": ""}, CONV[1]]
    assert with_system(CONV, "be brief") == [{"role": "system", "content": "be brief"}, CONV[1]]
    server.requests.clear()
    generator_for(server, system="be brief").answer([CONV], seeds=None)
    body = server.requests[0]["body"]
    assert body["messages"] == [{"role": "system", "content": "be brief"}, CONV[1]] and "seed" not in body


def test_retries_after_500_and_429_then_a_clear_error(server):
    server.script = [500, 429]
    assert generator_for(server).answer([CONV]) == ["ANSWER TO NAME A COLOUR"]
    assert len(server.requests) == 3
    server.requests.clear()
    server.script = [503] * 10
    with pytest.raises(EndpointError, match=r"generation endpoint .* \(model served-model\) failed after 3 attempt\(s\) "
                                            r"\(2 retries\): HTTP 503"):
        generator_for(server, max_retries=2).answer([CONV])
    server.script = [401]
    with pytest.raises(EndpointError, match=r"refused the request: HTTP 401.*check the API key in \$DW_GEN_KEY"):
        generator_for(server).answer([CONV])
    with pytest.raises(ConfigError, match="generation URL must start with http"):
        RemoteGenerator("localhost:8000", "m")


def _items(n: int) -> Dataset:
    return Dataset([Record(id=f"q{i}", instruction=f"Write a haiku about number {i}.", output=f"ref {i}")
                    for i in range(n)])


def test_evaluation_answers_come_from_the_server_cached_with_a_retry(server):
    server.script = [500, 429]  # two requests are retried
    ctx = Context(model="no-such-model-is-loaded", progress=False, batch_size=2)
    session = EvalSession(ctx, gen=GenerationParams(seed=7), max_new_tokens=5, generator=generator_for(server),
                          data=_items(5))
    texts, examples, info = session.generate(_items(5))
    assert texts == [f"ANSWER TO WRITE A HAIKU ABOUT NUMBER {i}." for i in range(5)] and examples is None
    assert info["computed"] == 5 and info["generator"].endswith("|served-model")
    assert len(server.requests) == 5 + 2
    bodies = [r["body"] for r in server.requests]
    assert {b["max_tokens"] for b in bodies} == {5} and {b["seed"] for b in bodies} == {7}
    assert {b["temperature"] for b in bodies} == {0.0}
    assert not ctx.model_loaded  # the local model was never loaded
    # a second suite over the same items reads the answers back: no new request
    again, _, info2 = session.generate(_items(5))
    assert again == texts and info2["cached"] == 5 and len(server.requests) == 7
    # another served model or a system prompt: a different cache key (and new answers)
    params = session.params_for(5)
    other = EvalSession(ctx, generator=RemoteGenerator(server.url, "other-model"))
    brief = EvalSession(ctx, generator=generator_for(server, system="be brief"))
    assert len({session.generation_key(params), other.generation_key(params), brief.generation_key(params)}) == 3


def test_ifeval_through_the_server_end_to_end(server):
    ctx = Context(model="no-such-model-is-loaded", progress=False)
    session = EvalSession(ctx, generator=generator_for(server), limit=3)
    res = evaluate(["ifeval"], session)
    suite = res["suites"]["ifeval"]
    assert suite["summary"]["n"] == 3 and len(server.requests) == 3
    assert all(row["answer"].startswith("ANSWER TO") for row in suite["items"])
    assert {r["body"]["max_tokens"] for r in server.requests} == {1024}  # ifeval's own default


def test_icl_conversations_use_the_local_prompts_examples(tiny_lm, tiny_model_dir):
    from test_evaluate_runner import KeywordEmbedder, _subset

    q = Record(id="q", instruction="Tell me about the cat and the dog")
    icl = ICLExamples(_subset(), KeywordEmbedder(), k=3, max_tokens=60)
    (text, used), = icl.prompts(tiny_lm, [q])
    (msgs, used_remote), = icl.conversations(PromptTokenizer.load(tiny_model_dir), [q])
    assert used_remote == used and len(used) < 3  # the budget dropped examples, the same ones
    assert tiny_lm.renderer.prompt_for_messages(msgs) == text


def _queries(n: int) -> Dataset:
    return Dataset([Record(id=f"d{i}", instruction=f"Query number {i}?") for i in range(n)])


def test_delia_cache_from_the_server_with_retry_and_resume(server, tmp_path):
    out = tmp_path / "cache.jsonl"
    server.script = [429]
    info = build_cache(_queries(5), None, out, batch_size=2, seed=3, progress=False, generator=generator_for(server),
                       max_new_tokens=17)
    assert info == {"written": 5, "generated": 5, "resumed": 0, "empty": 0, "path": str(out)}
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"d{i}" for i in range(5)]
    assert rows[2]["messages"] == [{"role": "user", "content": "Query number 2?"},
                                   {"role": "assistant", "content": "ANSWER TO QUERY NUMBER 2?"}]
    bodies = {r["body"]["messages"][-1]["content"]: r["body"] for r in server.requests}
    assert len(server.requests) == 6  # 5 queries, one retried after 429
    for i in range(5):  # each query's own seed, whatever the batching
        b = bodies[f"Query number {i}?"]
        assert b["seed"] == 3 + int(stable_hash(f"d{i}", 8), 16) % 2 ** 31
        assert (b["temperature"], b["top_p"], b["max_tokens"]) == (0.7, 0.95, 17)
    server.requests.clear()
    again = build_cache(_queries(6), None, out, batch_size=4, seed=3, progress=False, generator=generator_for(server))
    assert again["resumed"] == 5 and again["generated"] == 1 and len(server.requests) == 1


def test_command_lines(server, tmp_path, capsys):
    queries = tmp_path / "q.jsonl"
    write(_queries(3), str(queries))
    cache = tmp_path / "c.jsonl"
    gen = ["--generate-url", server.url, "--generate-model", "served-model", "--generate-key-env", "DW_GEN_KEY"]
    assert main(["delia", "build-cache", str(queries), "--out", str(cache), "--quiet", "--system", "none", *gen]) == 0
    assert len(load(str(cache))) == 3
    assert {json.dumps(r["body"]["messages"][0]) for r in server.requests} == {'{"role": "system", "content": ""}'}
    server.requests.clear()
    server.script = [500]  # retried once (back-off 1 s)
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--suite", "ifeval", "--limit", "2", "--out", str(out), "--quiet", *gen]) == 0
    res = json.loads(out.read_text())
    assert res["generator"] == f"remote:{server.url}/chat/completions|served-model" and res["model_identity"] is None
    assert res["suites"]["ifeval"]["summary"]["n"] == 2 and len(server.requests) == 3
    assert all(r["auth"] == f"Bearer {KEY}" for r in server.requests)
    capsys.readouterr()
    assert main(["evaluate", "--suite", "ifeval", "--out", str(out), "--generate-url", server.url]) == 2
    assert "--generate-url needs --generate-model" in capsys.readouterr().err
    assert KEY not in out.read_text()


def test_generator_options_are_checked():
    for bad, match in ((dict(concurrency=0), "concurrency must be >= 1"), (dict(max_retries=-1), "retries must be >= 0"),
                       (dict(timeout=0), "timeout must be > 0")):
        with pytest.raises(ConfigError, match=match):
            RemoteGenerator("http://127.0.0.1:1/v1", "m", **bad)
    with pytest.raises(ValueError, match="2 seeds for 1 conversations"):
        RemoteGenerator("http://127.0.0.1:1/v1", "m").answer([CONV], seeds=[1, 2])
