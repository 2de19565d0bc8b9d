"""Libraries are read from code per language, standard libraries and relative imports left out."""

from __future__ import annotations

import pytest

from singularity.centralcloud.libraries import canonical_language, libraries_in_job, libraries_of

PYTHON = """
import os, numpy as np
import requests.adapters
from pandas.core import frame
from . import sibling
from __future__ import annotations
"""

JAVASCRIPT = """
import React, { useState } from "react";
import * as fs from 'fs';
import {
  Router,
} from "express";
import '@scope/pkg/sub';
import local from './local';
export { x } from 'chalk';
const _ = require('lodash/fp');
const path = require("node:path");
const later = await import('dayjs');
"""

ELIXIR = """
defmodule App.Web do
  use Phoenix.Controller
  alias Ecto.Changeset
  import Enum
  require Logger
end
"""

BASH = """#!/bin/bash
set -e
FOO=1 curl -s http://x | jq .a && echo done
rev=$(git rev-parse HEAD) # why
if [ -f x ]; then grep a b; fi
"""


@pytest.mark.parametrize(
    ("language", "code", "expected"),
    [
        ("python", PYTHON, {"numpy", "requests", "pandas"}),
        ("python", "import numpy\nfrom flask import Flask\ndef broken(:", {"numpy", "flask"}),
        ("javascript", JAVASCRIPT, {"react", "express", "@scope/pkg", "chalk", "lodash", "dayjs"}),
        ("elixir", ELIXIR, {"Phoenix", "Ecto"}),
        ("bash", BASH, {"curl", "jq", "git", "grep"}),
        ("cobol", "CALL 'x'", set()),
    ],
)
def test_libraries_of_code(language: str, code: str, expected: set[str]) -> None:
    assert libraries_of(language, code) == expected


def test_a_jobs_extra_files_and_manifests_count_too() -> None:
    files = {
        "requirements.txt": "Django>=4\n# a comment\n-r more.txt\nnumpy==1.26\n",
        "web/helper.js": "require('axios')",
        "package.json": '{"dependencies": {"left-pad": "1"}, "devDependencies": {"jest": "2"}}',
        "mix.exs": 'defp deps do\n  [{:jason, "~> 1.4"}, {:plug, github: "elixir-plug/plug"}]\nend',
        "notes.txt": "import nothing",
    }
    assert libraries_in_job("py", "import flask", files) == {
        "python": {"flask", "django", "numpy"},
        "javascript": {"axios", "left-pad", "jest"},
        "elixir": {"jason", "plug"},
    }


def test_short_names_of_languages_are_folded() -> None:
    assert [canonical_language(n) for n in ("py", "Node", "sh", "exs", "go")] == [
        "python",
        "javascript",
        "bash",
        "elixir",
        "go",
    ]
