"""The data sets shipped inside the package (see ``bundled/PROVENANCE.md``), loadable as ``bundled:NAME``."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import DataError
from .readers import Meter, RowSource, file_rows, iter_jsonl, to_dataset
from .record import Dataset

FILES = {
    "alpaca_en_demo": "alpaca_en_demo.jsonl",
    "self_instruct_seed_tasks": "self_instruct_seed_tasks.jsonl",
    "natural_instructions_v1": "natural_instructions_v1.jsonl.gz",
    "ifeval_input_data": "ifeval_input_data.jsonl",
    "alpaca_eval_gpt4_baseline": "alpaca_eval_gpt4_baseline.jsonl",
    "arc_easy_validation": "arc_easy_validation.jsonl",
    "arc_challenge_validation": "arc_challenge_validation.jsonl",
    "mmlu_validation": "mmlu_validation.jsonl",
    "hellaswag_validation": "hellaswag_validation.jsonl.gz",
    "winogrande_xl_validation": "winogrande_xl_validation.jsonl",
}

LETTERS = "ABCDEFGHIJ"


def bundled_path(name: str) -> Path:
    """The file behind ``bundled:NAME``."""
    if name not in FILES:
        raise DataError(f"unknown bundled data set (available: {', '.join(FILES)})", path=f"bundled:{name}")
    return Path(str(resources.files("datawinnow.data") / "bundled" / FILES[name]))


def iter_raw(name: str) -> Iterator[dict[str, Any]]:
    """The rows of a bundled file exactly as shipped (for evaluation sets with their own fields)."""
    for _, row in iter_jsonl(bundled_path(name)):
        yield row


def _ifeval(row: dict) -> dict:
    return {"id": str(row["key"]), "instruction": row["prompt"], "input": "", "output": "",
            "instruction_id_list": row["instruction_id_list"], "kwargs": json.dumps(row["kwargs"])}


def _arc(row: dict) -> dict:
    labels, texts = row["choices"]["label"], row["choices"]["text"]
    body = "\n".join(f"{l}. {t}" for l, t in zip(labels, texts))
    answer = texts[labels.index(row["answerKey"])]
    return {"id": row["id"], "instruction": f"{row['question']}\n{body}", "input": "",
            "output": f"{row['answerKey']}. {answer}", "answerKey": row["answerKey"]}


def _mmlu(row: dict) -> dict:
    body = "\n".join(f"{LETTERS[k]}. {t}" for k, t in enumerate(row["choices"]))
    letter = LETTERS[row["answer"]]
    return {"instruction": f"{row['question']}\n{body}", "input": "",
            "output": f"{letter}. {row['choices'][row['answer']]}", "subject": row["subject"]}


def _hellaswag(row: dict) -> dict:
    body = "\n".join(f"{LETTERS[k]}. {t}" for k, t in enumerate(row["endings"]))
    answer = int(row["label"])
    return {"instruction": f"{row['activity_label']}: {row['ctx']}\n{body}", "input": "",
            "output": f"{LETTERS[answer]}. {row['endings'][answer]}", "source_id": row["source_id"],
            "split_type": row["split_type"]}


def _winogrande(row: dict) -> dict:
    answer = int(row["answer"]) - 1
    options = [row["option1"], row["option2"]]
    return {"instruction": f"{row['sentence']}\nA. {options[0]}\nB. {options[1]}", "input": "",
            "output": f"{LETTERS[answer]}. {options[answer]}"}


def _alpaca_eval(row: dict) -> dict:
    return {"instruction": row["instruction"], "input": "", "output": row["output"],
            "source": row.get("dataset"), "generator": row.get("generator")}


ADAPTERS: dict[str, Callable[[dict], dict]] = {
    "ifeval_input_data": _ifeval,
    "arc_easy_validation": _arc,
    "arc_challenge_validation": _arc,
    "mmlu_validation": _mmlu,
    "hellaswag_validation": _hellaswag,
    "winogrande_xl_validation": _winogrande,
    "alpaca_eval_gpt4_baseline": _alpaca_eval,
}


def bundled_rows(name: str) -> RowSource:
    """The rows of ``bundled:NAME`` (evaluation sets through their adapter to alpaca rows), read lazily."""
    path = bundled_path(name)
    adapter = ADAPTERS.get(name)
    if adapter is None:
        src = file_rows(path)
    else:
        meter = Meter(path.stat().st_size, "B")
        rows = ((k, adapter(row)) for k, row in iter_jsonl(path, meter))
        src = RowSource(rows, str(path), schema="alpaca", container="jsonl", warn=False, meter=meter)
    src.path = f"bundled:{name}"
    return src


def load_bundled(name: str) -> Dataset:
    return to_dataset(bundled_rows(name))
