"""The remote judge against a fake OpenAI-compatible server on 127.0.0.1: replies, garbage, 5xx, timeouts,
retries with back-off, the final error, concurrency, and the API key kept out of logs, errors and identities."""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from datawinnow.backends.judge import JudgeError, load_judge
from datawinnow.cli_options import judge_from_args
from datawinnow.backends.judge_remote import RemoteJudge, RemoteLogprobJudge
from datawinnow.data.record import Dataset, Record
from datawinnow.errors import ConfigError
from datawinnow.registry import METHODS, SCORERS
from datawinnow.runtime.context import Context

KEY = "sk-test-SECRET-0123456789"


class FakeServer:
    """Answers POST /v1/chat/completions from a script: a list of actions consumed in order, then ``default``.

    An action is ("reply", text), ("garbage", body), (status:int, body), ("sleep", seconds, text) or
    ("logprobs", [(token, logprob), ...]). Every request is recorded (headers and body)."""

    def __init__(self):
        self.script: list = []
        self.default = ("reply", "5")
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append({"path": self.path, "auth": self.headers.get("Authorization"),
                                            "body": body})
                    action = server.script.pop(0) if server.script else server.default
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    self._act(action, body)
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def _act(self, action, body):
                kind = action[0]
                if kind == "sleep":
                    time.sleep(action[1])
                    kind, action = "reply", ("reply", action[2])
                if kind == "reply":
                    text = action[1](body) if callable(action[1]) else action[1]
                    self._send(200, json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}))
                elif kind == "logprobs":
                    top = [{"token": t, "logprob": lp} for t, lp in action[1]]
                    self._send(200, json.dumps({"choices": [{"message": {"content": action[1][0][0]},
                                                             "logprobs": {"content": [{"token": action[1][0][0],
                                                                                       "top_logprobs": top}]}}]}))
                elif kind == "garbage":
                    self._send(200, action[1])
                else:
                    self._send(int(kind), action[1])

            def _send(self, status, text):
                data = text.encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def server(monkeypatch):
    monkeypatch.setenv("DW_TEST_KEY", KEY)
    s = FakeServer()
    yield s
    s.close()


def judge_for(server, **kw) -> RemoteJudge:
    opts = dict(api_key_env="DW_TEST_KEY", concurrency=4, timeout=5.0, max_retries=3, backoff=0.01)
    opts.update(kw)
    return load_judge("remote", model="judge-model", base_url=server.url, **opts)


CONV = [{"role": "user", "content": "rate this"}]


def test_reply_request_shape_and_key_header(server):
    server.default = ("reply", "4\nGood answer.")
    judge = judge_for(server)
    assert judge.chat([CONV], max_tokens=7) == ["4\nGood answer."]
    req = server.requests[0]
    assert req["path"] == "/v1/chat/completions"
    assert req["auth"] == f"Bearer {KEY}"
    assert req["body"] == {"model": "judge-model", "messages": CONV, "max_tokens": 7, "temperature": 0.0}
    assert KEY not in judge.identity and KEY not in repr(judge)
    assert judge.identity == f"remote:{server.url}/chat/completions|judge-model"


def test_no_key_variable_sends_no_header(server, monkeypatch):
    monkeypatch.delenv("DW_TEST_KEY")
    judge = judge_for(server)
    judge.chat([CONV])
    assert server.requests[0]["auth"] is None


def test_retries_on_500_then_succeeds(server, caplog):
    server.script = [(500, "boom"), (503, "busy"), ("reply", "3")]
    judge = judge_for(server)
    with caplog.at_level(logging.WARNING, logger="datawinnow.judge"):
        assert judge.chat([CONV]) == ["3"]
    assert len(server.requests) == 3
    assert [r.levelname for r in caplog.records] == ["WARNING", "WARNING"]
    assert "HTTP 500" in caplog.records[0].getMessage() and "retry 1/3" in caplog.records[0].getMessage()


def test_final_error_after_last_retry_and_key_never_logged(server, caplog, capsys):
    # the server even echoes the key in its error body: it must be redacted everywhere
    server.default = (500, json.dumps({"error": f"internal error for key {KEY}"}))
    judge = judge_for(server, max_retries=2)
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(JudgeError) as e:
            judge.chat([CONV])
    msg = str(e.value)
    assert "failed after 3 attempt(s) (2 retries)" in msg and "HTTP 500" in msg and "judge-model" in msg
    assert len(server.requests) == 3
    out = capsys.readouterr()
    everything = msg + caplog.text + out.out + out.err
    assert KEY not in everything
    assert "***" in msg


def test_timeouts_are_retried_then_fail(server):
    server.default = ("sleep", 1.0, "5")
    judge = judge_for(server, timeout=0.2, max_retries=1)
    t0 = time.perf_counter()
    with pytest.raises(JudgeError, match=r"failed after 2 attempt\(s\) \(1 retries\): timed out after 0.2 s"):
        judge.chat([CONV])
    assert len(server.requests) == 2
    assert time.perf_counter() - t0 < 3


def test_timeout_then_success(server):
    server.script = [("sleep", 1.0, "1"), ("reply", "2")]
    judge = judge_for(server, timeout=0.3)
    assert judge.chat([CONV]) == ["2"]


def test_429_is_retried_but_401_fails_at_once(server):
    server.script = [(429, "slow down"), ("reply", "5")]
    assert judge_for(server).chat([CONV]) == ["5"]
    server.requests.clear()
    server.script = [(401, "bad key")]
    with pytest.raises(JudgeError, match=r"refused the request: HTTP 401.*check the API key in \$DW_TEST_KEY"):
        judge_for(server).chat([CONV])
    assert len(server.requests) == 1


def test_garbage_body_is_a_clear_error(server):
    server.default = ("garbage", "<html>proxy error</html>")
    with pytest.raises(JudgeError, match="did not answer with a chat completion.*proxy error"):
        judge_for(server).chat([CONV])


def test_connection_refused_is_retried_then_fails():
    judge = RemoteJudge("http://127.0.0.1:9/v1", "m", max_retries=1, backoff=0.01)
    with pytest.raises(JudgeError, match="failed after 2 attempt.*connection failed"):
        judge.chat([CONV])


def test_concurrency_and_order(server):
    server.default = ("sleep", 0.2, lambda body: body["messages"][0]["content"].upper())
    judge = judge_for(server, concurrency=4)
    convs = [[{"role": "user", "content": f"q{i}"}] for i in range(8)]
    t0 = time.perf_counter()
    assert judge.chat(convs) == [f"Q{i}" for i in range(8)]
    assert server.max_in_flight == 4
    assert time.perf_counter() - t0 < 8 * 0.2  # overlapped, not one after another


def test_logprob_judge_reads_choice_probabilities(server):
    server.script = [("logprobs", [("4", np.log(0.6)), (" 5", np.log(0.2)), ("The", np.log(0.1)), ("3", np.log(0.1))])]
    judge = judge_for(server, logprobs=True)
    assert isinstance(judge, RemoteLogprobJudge) and judge.identity.endswith("|logprobs")
    p = judge.choice_probs([CONV], ["3", "4", "5"])
    np.testing.assert_allclose(p, [[0.1 / 0.9, 0.6 / 0.9, 0.2 / 0.9]])
    body = server.requests[0]["body"]
    assert body["logprobs"] is True and body["top_logprobs"] == 20 and body["max_tokens"] == 1
    server.script = [("logprobs", [("Sure", 0.0)])]
    with pytest.raises(JudgeError, match=r"none of \['1', '2'\] is among the top 20"):
        judge.choice_probs([CONV], ["1", "2"])


def test_plain_remote_judge_cannot_read_probabilities(server):
    with pytest.raises(JudgeError, match="cannot read token probabilities"):
        judge_for(server).choice_probs([CONV], ["1", "2"])


def test_bad_options_are_config_errors(server):
    with pytest.raises(ConfigError, match="needs --judge-url"):
        load_judge("remote", model="m")
    with pytest.raises(ConfigError, match="needs --judge-model"):
        load_judge("remote", base_url=server.url)
    with pytest.raises(ConfigError, match="must start with http"):
        load_judge("remote", model="m", base_url="localhost:8000")
    with pytest.raises(ConfigError, match="judge must be one of local, remote"):
        load_judge("cloud")


# ------------------------------------------------------------------------------------------ scorers
def _pool() -> Dataset:
    return Dataset([Record(id=f"r{i}", instruction=f"task {i}", output=f"answer {i}") for i in range(6)])


def test_alpagasus_parses_the_first_rating_0_to_5_from_remote_replies(server):
    # replies by task number; the first number on the 0-5 scale is the score, decimals included
    # ("Grade: 8 is too generous; 4" -> 4: 8 is not 0-5)
    replies = {"task 0": "5\nPerfect.", "task 1": "Rating: 4.5 - minor issues", "task 2": "Grade: 8 is too generous; 4",
               "task 3": "I would give it a 2", "task 4": "3/5", "task 5": "0 - wrong"}

    def reply(body):
        text = body["messages"][-1]["content"]
        return next(v for k, v in replies.items() if f"=== Task ===\n{k}\n" in text)

    server.default = ("reply", reply)
    ctx = Context(judge=judge_for(server), progress=False)
    table = SCORERS.get("alpagasus")().score(_pool(), ctx)
    assert table.score.tolist() == [5.0, 4.5, 4.0, 2.0, 3.0, 0.0]
    assert table.info["judge"] == f"remote:{server.url}/chat/completions|judge-model"
    # cached: a second run sends nothing
    n = len(server.requests)
    SCORERS.get("alpagasus")().score(_pool(), ctx)
    assert len(server.requests) == n


def test_alpagasus_unparsable_reply_is_an_error_or_dropped(server):
    server.default = ("reply", lambda body: "no idea" if "task 3" in body["messages"][-1]["content"] else "5")
    ctx = Context(judge=judge_for(server), progress=False)
    with pytest.raises(JudgeError, match=r"reply for record 'r3' has no score: 'no idea'"):
        SCORERS.get("alpagasus")().score(_pool(), ctx)
    table = SCORERS.get("alpagasus")(on_unparsable="drop").score(_pool(), ctx)
    assert np.isnan(table.score[3]) and table.info["unscored"] == 1
    with pytest.warns(UserWarning, match="only 5 records qualify"):
        sel = METHODS.get("alpagasus")(on_unparsable="drop").run(_pool(), 6, ctx)
    assert "r3" not in sel.selected and sel.reasons["r3"].startswith("no rating")
    # cached NaN rows are not silently accepted by the strict mode either
    with pytest.raises(JudgeError, match="'r3' has no score"):
        SCORERS.get("alpagasus")().score(_pool(), ctx)


def test_cli_select_with_remote_judge(server, tmp_path, capsys):
    from datawinnow.cli import main
    from datawinnow.data import write

    src = tmp_path / "pool.jsonl"
    write(_pool(), str(src))
    scores = {f"task {i}": s for i, s in enumerate("542535")}
    server.default = ("reply", lambda body: next(v for k, v in scores.items()
                                                 if f"=== Task ===\n{k}\n" in body["messages"][-1]["content"]))
    out = tmp_path / "sel.jsonl"
    rc = main(["select", str(src), "--method", "alpagasus", "--param", "threshold=4", "--out", str(out),
               "--judge-url", server.url, "--judge-model", "judge-model", "--judge-key-env", "DW_TEST_KEY",
               "--judge-concurrency", "2", "--quiet"])
    assert rc == 0
    # ratings 5,4,2,5,3,5 -> >= 4: r0, r1, r3, r5 (no budget: exactly those), order by rating then id
    kept = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert kept == ["r0", "r3", "r5", "r1"]
    manifest = (tmp_path / ".sel.jsonl.manifest.json").read_text()
    assert KEY not in manifest and KEY not in "".join(capsys.readouterr())
    assert all(r["auth"] == f"Bearer {KEY}" for r in server.requests)


def test_judge_from_args_remote(server):
    import argparse

    from datawinnow.cli_options import add_judge_options

    p = argparse.ArgumentParser()
    add_judge_options(p)
    assert judge_from_args(p.parse_args([])) is None
    j = judge_from_args(p.parse_args(["--judge-url", server.url, "--judge-model", "m", "--judge-retries", "5",
                                      "--judge-concurrency", "3", "--judge-timeout", "9"]))
    assert isinstance(j, RemoteJudge) and (j.max_retries, j.concurrency, j.timeout) == (5, 3, 9.0)
