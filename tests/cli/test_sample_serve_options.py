"""The options `gptkit sample` and `gptkit serve` share or check at the command line, without starting a server:
--port and --host, one sampling default and one set of sampling limits for both, the defaults shown in --help."""

import pytest

from gptkit.cli import main


@pytest.mark.parametrize("argv,words", [
    (["--port", "70000"], "argument --port: must be from 1 to 65535, got 70000"),
    (["--port", "0"], "argument --port: must be from 1 to 65535, got 0"),
    (["--port", "-1"], "argument --port: must be from 1 to 65535, got -1"),
    (["--port", "http"], "argument --port: not a whole number: 'http'"),
    (["--host", ""], "argument --host: must be a host name or address"),
    (["--host", "  "], "argument --host: must be a host name or address"),
])
def test_serve_refuses_a_port_or_host_it_cannot_bind_as_a_usage_error(argv, words, capsys):
    with pytest.raises(SystemExit) as e:
        main(["serve", *argv])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("usage: gptkit serve") and f"gptkit serve: error: {words}" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("argv,words", [
    (["--temperature", "inf"], "--temperature must be a number from 0 to 2 (0 = greedy), got inf"),
    (["--temperature", "nan"], "--temperature must be a number from 0 to 2 (0 = greedy), got nan"),
    (["--temperature", "-0.5"], "--temperature must be a number from 0 to 2 (0 = greedy), got -0.5"),
    (["--temperature", "2.5"], "--temperature must be a number from 0 to 2 (0 = greedy), got 2.5"),
    (["--top-k", "0"], "--top-k must be a whole number >= 1, got 0"),
    (["--top-p", "0"], "--top-p must be in (0, 1] (1 = no cut), got 0.0"),
    (["--top-p", "1.5"], "--top-p must be in (0, 1] (1 = no cut), got 1.5"),
    (["--max-new-tokens", "-1"], "--max-new-tokens must be a whole number >= 0, got -1"),
    (["--num-samples", "0"], "--num-samples must be a whole number >= 1, got 0"),
])
def test_sample_refuses_sampling_options_out_of_range_with_one_line(tmp_path, argv, words, capsys):
    assert main(["sample", str(tmp_path / "no-such-run"), *argv]) == 1  # checked before any model is looked for
    assert capsys.readouterr().err == f"gptkit: error: {words}\n"


def test_sample_help_shows_the_sampling_defaults(capsys):
    with pytest.raises(SystemExit) as e:
        main(["sample", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps at the terminal's width
    assert e.value.code == 0
    assert "--temperature TEMPERATURE 0 = greedy, at most 2 (default: 1.0, as gptkit serve's)" in text
    assert "1 = all (default: 1.0, as gptkit serve's)" in text and "(default: 500)" in text


def test_sample_and_serve_sample_with_one_default():
    """A request that names no temperature or top_p gets what `gptkit sample` without flags uses: OpenAI's 1.0."""
    pytest.importorskip("fastapi", reason="gptkit serve's dependency: pip install -e '.[serve]'")
    from gptkit.cli import build_parser
    from gptkit.config import TEMPERATURE, TOP_P
    from gptkit.serve.app import Limits, parse_completion

    args = build_parser().parse_args(["sample", "some-run"])
    request = parse_completion({"model": "some-run", "prompt": "a"}, Limits())
    assert args.temperature == request["temperature"] == TEMPERATURE == 1.0
    assert args.top_p == request["top_p"] == TOP_P == 1.0 and args.top_k is request["top_k"] is None


@pytest.mark.parametrize("field,value,words", [
    ("temperature", float("inf"), "'temperature' must be a number from 0 to 2 (0 = greedy), got inf"),
    ("temperature", 10**400, "'temperature' must be a number from 0 to 2 (0 = greedy), got 1000"),
    ("top_p", 0, "'top_p' must be in (0, 1] (1 = no cut), got 0"),
    ("top_k", 0, "'top_k' must be a whole number >= 1, got 0"),
], ids=["temperature-inf", "temperature-10**400", "top_p-0", "top_k-0"])
def test_serve_checks_the_limits_sample_checks(field, value, words):
    pytest.importorskip("fastapi", reason="gptkit serve's dependency: pip install -e '.[serve]'")
    from gptkit.serve.app import ApiError, Limits, parse_completion

    with pytest.raises(ApiError) as e:
        parse_completion({"model": "m", "prompt": "a", field: value}, Limits())
    assert e.value.status == 400 and e.value.param == field and str(e.value).startswith(words)


def test_the_engine_refuses_what_sample_and_serve_refuse():
    from gptkit.generate.engine import Request

    for kw in ({"temperature": float("inf")}, {"temperature": 3.0}, {"top_k": 0}, {"top_p": 1.5}):
        with pytest.raises(ValueError, match="must be"):
            Request((1,), **kw)
