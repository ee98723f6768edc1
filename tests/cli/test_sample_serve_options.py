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
