"""The command line's run settings: one option group, mapped onto :class:`~datawinnow.runtime.RuntimeOptions` and back.

Every command that runs a model declares its flags here (:func:`add_runtime_options`, choosing which with
``include`` and, where a command means something else by a flag, its own defaults and help), and turns the
parsed arguments into options with :func:`runtime_options_from_args`; :func:`args_from_runtime_options` writes
options back as flags (the effective command line; ``runtime_options_from_args(parse(args_from_runtime_options(o)))``
gives ``o`` back). The judge flags (``--judge*``) and the remote-generation flags (``--generate-*``) live here
too: below the command line nothing reads argparse namespaces; the backends take plain specs
(:func:`datawinnow.backends.judge.load_judge`, :class:`~datawinnow.backends.generator_remote.RemoteGenerator`).

Flags by group (``include`` takes flag names as argparse spells their destinations):

- :data:`MODEL_FLAGS`: ``--model --adapter --embedder --device --dtype --system --max-length --batch-size
  --batch-tokens --seed --no-cache --cache-dir --quiet``;
- :data:`EXECUTOR_FLAGS`: ``--executor --ray-address --workers --worker-threads``;
- :data:`JUDGE_FLAGS`: ``--judge --judge-model --judge-url --judge-key-env --judge-concurrency --judge-timeout
  --judge-retries --judge-logprobs --judge-template``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from .errors import ConfigError
from .runtime.describe import system_from_text, system_policy
from .runtime.options import DTYPES, EXECUTORS, RuntimeOptions

MODEL_GROUP = "model"
EXECUTOR_GROUP = "executor (where model batches run)"
JUDGE_GROUP = "judge (LLM rating for alpagasus, deita, selectit, and judged evaluations)"
GENERATE_GROUP = "generation through an OpenAI-compatible server ({what})"


@dataclass(frozen=True)
class Flag:
    """One flag: its argparse keywords (``default``, ``help``, ...) and the help group it goes in."""

    dest: str
    group: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def option(self) -> str:
        return "--" + self.dest.replace("_", "-")

    @property
    def default(self) -> Any:
        return self.kwargs.get("default", False if self.kwargs.get("action") == "store_true" else None)


def _flags(group: str, *specs: tuple[str, dict[str, Any]]) -> dict[str, Flag]:
    return {dest: Flag(dest, group, kwargs) for dest, kwargs in specs}


FLAGS: dict[str, Flag] = {
    **_flags(
        MODEL_GROUP,
        ("model", dict(default="smollm2", help="causal LM: smollm2 (embedded SmolLM2-135M-Instruct), a local folder, "
                                               "a hub id, or NAME+ADAPTER_DIR")),
        ("adapter", dict(default=None, help="a LoRA adapter folder to apply on top of --model")),
        ("embedder", dict(default="minilm",
                          help="sentence embedder: minilm (embedded all-MiniLM-L6-v2), a folder or a hub id")),
        ("device", dict(default="auto", help="auto, cpu, cuda or cuda:N")),
        ("dtype", dict(default="auto", choices=list(DTYPES),
                       help="auto: bf16 on CUDA and on CPUs with AMX/AVX512-BF16, fp32 otherwise")),
        ("system", dict(default="default",
                        help="system prompt: 'default' (the chat template's own; SmolLM2 adds its persona), 'none' "
                             "(empty system turn), or a text")),
        ("max_length", dict(type=int, default=512,
                            help="tokens per sequence (prompt + response); longer pairs are truncated")),
        ("batch_size", dict(type=int, default=None,
                            help="fixed count: sequences per forward pass (length-sorted); overrides --batch-tokens "
                                 "(None: batches by --batch-tokens)")),
        ("batch_tokens", dict(default="auto", metavar="N|auto",
                              help="token budget per forward pass (batch size x its longest sequence) over "
                                   "length-sorted work; auto: from free memory on CUDA, 16384 on a CPU, where "
                                   "batches also close at 2%% padding")),
        ("seed", dict(type=int, default=0, help="seed for every random choice")),
        ("no_cache", dict(action="store_true", help="do not read or write the score cache")),
        ("cache_dir", dict(default=None, help="cache folder (None: $DATAWINNOW_CACHE, else ~/.cache/datawinnow)")),
        ("quiet", dict(action="store_true",
                       help="no progress bars, no information lines, and none of the ML libraries' loading bars and "
                            "warnings (errors and datawinnow's own warnings still show)")),
    ),
    **_flags(
        EXECUTOR_GROUP,
        ("executor", dict(default="local", choices=list(EXECUTORS),
                          help="local: this process, batch after batch; ray: Ray actors that each hold one model "
                               "(the 'ray' extra). Both read and write the same score cache, so either resumes "
                               "the other's run")),
        ("ray_address", dict(default=None, metavar="ADDRESS",
                             help="--executor ray: join this running Ray cluster (e.g. auto or ray://HEAD:10001); "
                                  "None: start a local Ray")),
        ("workers", dict(type=int, default=None, metavar="N",
                         help="--executor ray: number of model actors (None: one per GPU, else one per CPU slot of "
                              "--worker-threads threads)")),
        ("worker_threads", dict(type=int, default=None, metavar="N",
                                help="--executor ray: torch threads (and Ray CPUs) of each actor (None: on GPUs 1; on CPUs the "
                                     "cluster's CPUs shared among --workers, else 1 with one actor per CPU)")),
    ),
    **_flags(
        JUDGE_GROUP,
        ("judge", dict(default=None, choices=["local", "remote"],
                       help="local: a causal LM from the model backend (default for scorers: the --model itself); "
                            "remote: an OpenAI-compatible chat-completions endpoint (--judge-url, --judge-model)")),
        ("judge_model", dict(default=None, help="local: a model name/folder/hub id (default: --model); remote: the "
                                                "served model's name")),
        ("judge_url", dict(default=None, help="remote: the endpoint's base URL, e.g. http://localhost:8000/v1 "
                                              "(implies --judge remote)")),
        ("judge_key_env", dict(default="OPENAI_API_KEY",
                               help="remote: name of the environment variable holding the API key (the key is never "
                                    "logged)")),
        ("judge_concurrency", dict(type=int, default=4, help="remote: requests in flight")),
        ("judge_timeout", dict(type=float, default=60.0, help="remote: seconds per request")),
        ("judge_retries", dict(type=int, default=3, help="remote: retries on timeouts, connection errors, 429 and "
                                                         "5xx, with exponential back-off")),
        ("judge_logprobs", dict(action="store_true", help="remote: read rating probabilities from the endpoint's "
                                                          "top_logprobs (if it supports them)")),
        ("judge_template", dict(default="chat", choices=["chat", "raw"],
                                help="local: render judge prompts with the model's chat template, or as raw text")),
    ),
}

MODEL_FLAGS = ("model", "adapter", "embedder", "device", "dtype", "system", "max_length", "batch_size", "batch_tokens",
               "seed", "no_cache", "cache_dir", "quiet")
EXECUTOR_FLAGS = ("executor", "ray_address", "workers", "worker_threads")
JUDGE_FLAGS = ("judge", "judge_model", "judge_url", "judge_key_env", "judge_concurrency", "judge_timeout",
               "judge_retries", "judge_logprobs", "judge_template")
ALL_FLAGS = MODEL_FLAGS + JUDGE_FLAGS + EXECUTOR_FLAGS

_LOCAL_JUDGE_DEFAULTS = {"kind": "local", "template": "chat"}
_REMOTE_JUDGE_KEYS = {"api_key_env": "judge_key_env", "concurrency": "judge_concurrency", "timeout": "judge_timeout",
                      "max_retries": "judge_retries", "logprobs": "judge_logprobs"}


def _check_names(names: Iterable[str], what: str) -> None:
    unknown = [n for n in names if n not in FLAGS]
    if unknown:
        raise ValueError(f"{what}: no runtime flag named {', '.join(unknown)} (known: {', '.join(FLAGS)})")


def add_runtime_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup, *,
                        include: Sequence[str] = MODEL_FLAGS, defaults: dict[str, Any] | None = None,
                        helps: dict[str, str] | None = None, grouped: bool = True) -> None:
    """Declare the flags named in ``include`` (in that order) on ``parser``: a parser, where each flag goes in
    its help group (model, executor, judge: a group is made per call, so name each group's flags in one call)
    unless ``grouped`` is False, or an argument group, which takes them all. ``defaults``/``helps`` replace
    a flag's own default or help text, for a command that means something of its own by it (``train``'s
    batch size)."""
    defaults, helps = defaults or {}, helps or {}
    _check_names(include, "add_runtime_options(include=...)")
    _check_names([*defaults, *helps], "add_runtime_options(defaults=/helps=)")
    groups: dict[str, Any] = {}
    for dest in include:
        flag = FLAGS[dest]
        target = parser
        if grouped and not isinstance(parser, argparse._ArgumentGroup):
            if flag.group not in groups:
                groups[flag.group] = parser.add_argument_group(flag.group)
            target = groups[flag.group]
        kwargs = dict(flag.kwargs)
        if dest in defaults:
            kwargs["default"] = defaults[dest]
        if dest in helps:
            kwargs["help"] = helps[dest]
        target.add_argument(flag.option, dest=dest, **kwargs)


def add_judge_options(parser: argparse.ArgumentParser) -> None:
    """The ``--judge*`` options (an argument group) for any command that uses a judge."""
    add_runtime_options(parser, include=JUDGE_FLAGS)


def runtime_options_from_args(args: argparse.Namespace) -> RuntimeOptions:
    """The run settings the parsed flags describe; a flag the command does not declare takes the
    :class:`RuntimeOptions` default. ``--adapter`` joins ``--model`` as ``MODEL+ADAPTER``; ``--batch-size``
    (fixed batches) overrides ``--batch-tokens``; ``--system`` is read by
    :func:`~datawinnow.runtime.describe.system_from_text`."""
    from .preflight import check_device_name

    d = RuntimeOptions()

    def get(name: str, default: Any = None) -> Any:
        return getattr(args, name, default)

    device = get("device", d.device)
    check_device_name(device)
    model, adapter = get("model"), get("adapter")
    if adapter:
        model = f"{model}+{adapter}"
    batch_size = get("batch_size")
    return RuntimeOptions(
        model=model, embedder=get("embedder"), judge=judge_spec_from_args(args), device=device,
        dtype=get("dtype", d.dtype), system=system_from_text(get("system")), max_length=get("max_length", d.max_length),
        batch_size=batch_size or d.batch_size, batch_tokens=None if batch_size else get("batch_tokens"),
        seed=get("seed", d.seed), use_cache=not get("no_cache", False), cache_dir=get("cache_dir"),
        progress=not get("quiet", False), executor=get("executor", d.executor), ray_address=get("ray_address"),
        workers=get("workers"), worker_threads=get("worker_threads"))


def flag_values(options: RuntimeOptions) -> dict[str, Any]:
    """The flag values (by destination) that :func:`runtime_options_from_args` maps onto ``options``;
    a value the flags cannot express is a :class:`ConfigError`."""
    values: dict[str, Any] = {
        "model": options.model if options.model is not None else FLAGS["model"].default,
        "embedder": options.embedder if options.embedder is not None else FLAGS["embedder"].default,
        "device": str(options.device), "dtype": _dtype_flag(options.dtype), "system": system_policy(options.system),
        "max_length": options.max_length, "seed": options.seed, "no_cache": not options.use_cache,
        "cache_dir": options.cache_dir, "quiet": not options.progress, "executor": options.executor,
        "ray_address": options.ray_address, "workers": options.workers, "worker_threads": options.worker_threads,
    }
    if options.batch_tokens is None:
        values["batch_size"] = options.batch_size
    elif options.batch_size != RuntimeOptions().batch_size:
        raise ConfigError(f"batch_size {options.batch_size} with a token budget ({options.batch_tokens}) has no "
                          "flags: --batch-size replaces --batch-tokens")
    else:
        values["batch_tokens"] = str(options.batch_tokens)
    values.update(_judge_values(options.judge))
    return values


def args_from_runtime_options(options: RuntimeOptions, *, include: Sequence[str] = ALL_FLAGS,
                              defaults: dict[str, Any] | None = None) -> list[str]:
    """``options`` as the flags of a command that declares ``include`` (with those ``defaults``), in that
    order: only the flags whose value differs from their default. A setting no included flag can express
    is a :class:`ConfigError`."""
    _check_names(include, "args_from_runtime_options(include=...)")
    defaults = defaults or {}
    given: list[tuple[str, list[str]]] = []
    for dest, value in flag_values(options).items():
        flag = FLAGS[dest]
        if value == defaults.get(dest, flag.default):
            continue
        if dest not in include:
            raise ConfigError(f"{flag.option} {value} is not an option of this command")
        given.append((dest, [flag.option] if flag.kwargs.get("action") == "store_true" else [flag.option, str(value)]))
    order = {dest: k for k, dest in enumerate(include)}
    return [tok for _, toks in sorted(given, key=lambda g: order[g[0]]) for tok in toks]


def _dtype_flag(dtype: Any) -> str:
    if isinstance(dtype, str):
        return dtype
    from .backends.device import dtype_name

    return dtype_name(dtype)


# -------------------------------------------------------------------------------------------- judge
def judge_spec_from_args(args: argparse.Namespace) -> dict[str, Any] | None:
    """The judge spec (a dict for :func:`~datawinnow.backends.judge.load_judge`) the ``--judge*`` options
    describe; None when none is named.

    A local judge without ``--judge-model`` has ``model`` None: a scorer's context then uses its own model.
    """
    kind = getattr(args, "judge", None)
    url = getattr(args, "judge_url", None)
    jmodel = getattr(args, "judge_model", None)
    if kind is None:
        kind = "remote" if url else ("local" if jmodel else None)
    if kind is None:
        return None
    spec: dict[str, Any] = {"kind": kind, "model": jmodel}
    if kind == "remote":
        spec.update(base_url=url, api_key_env=getattr(args, "judge_key_env", "OPENAI_API_KEY"),
                    concurrency=getattr(args, "judge_concurrency", 4), timeout=getattr(args, "judge_timeout", 60.0),
                    max_retries=getattr(args, "judge_retries", 3), logprobs=getattr(args, "judge_logprobs", False))
    else:
        spec.update(template=getattr(args, "judge_template", "chat"), device=getattr(args, "device", "auto"),
                    dtype=getattr(args, "dtype", "auto"), base_url=url)
    return spec


def judge_from_args(args: argparse.Namespace):
    """The judge the ``--judge*`` options name, or None when ``--judge`` (or ``--judge-url``/``--judge-model``)
    is absent.

    A local judge without ``--judge-model`` judges with ``--model`` (the base model, without ``--adapter``).
    """
    from .backends.judge import load_judge

    spec = judge_spec_from_args(args)
    if spec is None:
        return None
    if spec["kind"] == "local" and spec["model"] is None:
        spec["model"] = getattr(args, "model", None)
    return load_judge(spec)


def _judge_values(spec: Any) -> dict[str, Any]:
    """The ``--judge*`` flag values of a judge spec (the inverse of :func:`judge_spec_from_args`)."""
    if spec is None:
        return {}
    if isinstance(spec, str):
        spec = {"kind": spec}
    if not isinstance(spec, dict):
        raise ConfigError(f"a loaded judge ({type(spec).__name__}) has no flags; pass a judge spec")
    kind = spec.get("kind") or ("remote" if spec.get("base_url") else "local")
    model = spec.get("model")
    if model is not None and not isinstance(model, str):
        raise ConfigError(f"a judge on a loaded model ({type(model).__name__}) has no flags; name the model")
    values: dict[str, Any] = {"judge": kind, "judge_model": model, "judge_url": spec.get("base_url")}
    if kind == "remote":
        values.update({flag: spec[key] for key, flag in _REMOTE_JUDGE_KEYS.items() if key in spec})
    else:
        values["judge_template"] = spec.get("template", _LOCAL_JUDGE_DEFAULTS["template"])
    return values


# ---------------------------------------------------------------------------------- remote generation
def add_generate_options(parser: argparse.ArgumentParser, what: str) -> None:
    """The ``--generate-*`` options (an argument group) of a command that generates text; ``what`` names it."""
    g = parser.add_argument_group(GENERATE_GROUP.format(what=what))
    g.add_argument("--generate-url", default=None, metavar="URL",
                   help="base URL of a vLLM, SGLang, TGI, llama.cpp or OpenAI server (e.g. http://localhost:8000/v1): "
                        "it answers instead of the local --model")
    g.add_argument("--generate-model", default=None, metavar="NAME",
                   help="the model name the server serves (needed with --generate-url)")
    g.add_argument("--generate-key-env", default="OPENAI_API_KEY", metavar="VAR",
                   help="name of the environment variable holding the API key (none sent when unset; never logged)")
    g.add_argument("--generate-concurrency", type=int, default=8, help="requests in flight")
    g.add_argument("--generate-timeout", type=float, default=300.0, help="seconds per request")
    g.add_argument("--generate-retries", type=int, default=3,
                   help="retries on timeouts, connection errors, 429 and 5xx, with exponential back-off")


def generator_from_args(args: argparse.Namespace, system: str | None = None):
    """The :class:`~datawinnow.backends.generator_remote.RemoteGenerator` the ``--generate-*`` options name, or
    None when ``--generate-url`` is absent."""
    url = getattr(args, "generate_url", None)
    model = getattr(args, "generate_model", None)
    if not url:
        if model:
            raise ConfigError("--generate-model needs --generate-url (the server's base URL)")
        return None
    if not model:
        raise ConfigError("--generate-url needs --generate-model (the model name the server serves)")
    from .backends.generator_remote import RemoteGenerator

    return RemoteGenerator(url, model, system=system, api_key_env=args.generate_key_env,
                           concurrency=args.generate_concurrency, timeout=args.generate_timeout,
                           max_retries=args.generate_retries)
