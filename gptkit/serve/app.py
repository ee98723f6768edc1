"""The FastAPI app: OpenAI's completions API on gptkit's engine, tokenizer and runs endpoints, and the page.

- GET /v1/models, POST /v1/completions (model, prompt: a string or a list of them, max_tokens, temperature, top_p,
  top_k (an extension), n, stop, seed, stream with server-sent events ending in `data: [DONE]`,
  stream_options.include_usage), errors in OpenAI's shape {"error": {"message", "type", "param", "code"}}: 400 a bad
  request (the prompt too long: code context_length_exceeded), 404 an unknown model, 503 a full waiting room.
- POST /v1/chat/completions: the same for a conversation (messages: system or developer, user, assistant; content a
  string or text parts; max_completion_tokens or max_tokens, default the rest of the context), rendered in the
  model's chat format (gptkit.generate.chat); chunks of chat.completion.chunk (the role first, then content deltas);
  400 for a model with no chat format, unsupported options (tools, logprobs, response_format ...) by name, and a
  conversation the format refuses or the context cannot hold.
- POST /api/tokenize, /api/detokenize, GET /api/merges (the merges that built a token), /api/tokenizers;
  GET /api/runs, /api/runs/{name} (config and metrics.jsonl, readable while the run trains); GET /health.
- GET / the page (gptkit/serve/static).

Choice k of a request with seed S samples with seed S + k, so it gives the text of `gptkit sample --seed S`'s
sample k (and choice 0 of a chat request `gptkit chat --seed S`'s reply); a request without a seed gets a random one.
Nothing here writes a file.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI
from fastapi import Request as HttpRequest
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from gptkit.config import TEMPERATURE, TOP_P, SamplingError, check_sampling
from gptkit.generate.engine import Request
from gptkit.serve.errors import ApiError, BodyLimit, add_error_handlers
from gptkit.serve.registry import METRICS, PRETRAINED_TOKENIZERS, Registry
from gptkit.serve.worker import Job

STATIC = Path(__file__).parent / "static"


@dataclass(frozen=True)
class Limits:
    max_tokens: int = 1024  # the most max_tokens a request may ask for
    default_max_tokens: int = 16  # OpenAI's default
    max_n: int = 16  # choices per prompt
    max_prompts: int = 16  # prompts per request
    max_body: int = 1 << 20  # bytes of a request body: more is answered 413 before it is read
    max_tokenize_chars: int = 100_000  # characters /api/tokenize takes (its reply is ~60 bytes a token)
    max_points: int = 2_000  # metrics records /api/runs/NAME returns (evenly thinned, the last one kept)


# Fields of OpenAI's completions API gptkit does not implement: a request that sets one to anything but its no-op
# value is refused naming it, rather than silently answered as if it had not asked.
UNSUPPORTED = {"echo": (False,), "logprobs": (None,), "suffix": (None,), "best_of": (1,),
               "frequency_penalty": (0, 0.0), "presence_penalty": (0, 0.0), "logit_bias": ({},)}


async def _body(request: HttpRequest) -> dict:
    try:
        body = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ApiError(400, f"the request body is not valid JSON ({e})") from None
    except RecursionError:
        raise ApiError(400, "the request body nests JSON too deeply") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return body


def _field(body: dict, name: str, kinds, default=None, check=None, rule: str = ""):
    """body[name] if it has one of `kinds` (bool never counts as a number) and passes `check`, else a 400."""
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        raise ApiError(400, f"'{name}' must be {rule or kinds}, got {value!r}", name)
    if check is not None and not check(value):
        raise ApiError(400, f"'{name}' must be {rule}, got {value!r}", name)
    return value


def parse_completion(body: dict, limits: Limits) -> dict:
    """The checked settings of a completions request (each mistake a 400 naming the field)."""
    prompt = body.get("prompt")
    prompts = [prompt] if isinstance(prompt, str) else prompt
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise ApiError(400, "'prompt' must be a string or a non-empty list of strings", "prompt")
    if len(prompts) > limits.max_prompts:
        raise ApiError(400, f"at most {limits.max_prompts} prompts per request", "prompt")
    _refuse(body, UNSUPPORTED)
    max_tokens = _field(body, "max_tokens", (int,), limits.default_max_tokens, lambda v: 0 <= v <= limits.max_tokens,
                        f"an integer from 0 to {limits.max_tokens}")
    return {**_sampling(body, limits, max_tokens), "prompts": prompts}


# Fields of OpenAI's chat completions API gptkit does not implement (tools, structured output, log-probabilities,
# audio ...): refused by name unless set to their no-op value. Fields about billing or storage (user, metadata,
# store, service_tier) change no reply and are ignored.
CHAT_UNSUPPORTED = {"tools": ([],), "tool_choice": ("none",), "functions": ([],), "function_call": ("none",),
                    "parallel_tool_calls": (), "logprobs": (False,), "top_logprobs": (0,),
                    "response_format": ({"type": "text"},), "audio": (), "modalities": (["text"],), "prediction": (),
                    "web_search_options": (), "reasoning_effort": (), "frequency_penalty": (0, 0.0),
                    "presence_penalty": (0, 0.0), "logit_bias": ({},)}
CHAT_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


def parse_chat(body: dict, limits: Limits) -> dict:
    """The checked settings of a chat completions request: its messages as gptkit's (developer is system; content a
    string or a list of text parts), and the sampling settings; each mistake a 400 naming the field."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "'messages' must be a non-empty list of {\"role\", \"content\"} objects", "messages")
    out = []
    for k, m in enumerate(messages):
        role = m.get("role") if isinstance(m, dict) else None
        if role not in CHAT_ROLES:
            raise ApiError(400, f"messages[{k}]: role {role!r} is not supported (system, developer, user, assistant; "
                           "gptkit serve has no tools)", f"messages[{k}].role")
        content = m.get("content")
        if isinstance(content, list):
            if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                       for p in content):
                raise ApiError(400, f"messages[{k}]: only text parts ({{\"type\": \"text\", \"text\": ...}}) are "
                               "supported", f"messages[{k}].content")
            content = "".join(p["text"] for p in content)
        if not isinstance(content, str) or not content:
            raise ApiError(400, f"messages[{k}] ({role}) has no text: content must be a non-empty string or text "
                           "parts", f"messages[{k}].content")
        out.append({"role": CHAT_ROLES[role], "content": content})
    if out[-1]["role"] == "assistant":
        raise ApiError(400, "the conversation ends with the assistant's turn; end it with a user message for the "
                       "model to answer", "messages")
    _refuse(body, CHAT_UNSUPPORTED)
    asked = [n for n in ("max_completion_tokens", "max_tokens") if body.get(n) is not None]
    max_tokens = _field(body, asked[0], (int,), None, lambda v: 0 <= v <= limits.max_tokens,
                        f"an integer from 0 to {limits.max_tokens}") if asked else None
    return {**_sampling(body, limits, max_tokens), "messages": out}


def _refuse(body: dict, unsupported: dict) -> None:
    for name, no_op in unsupported.items():
        if body.get(name) is not None and body[name] not in no_op:
            raise ApiError(400, f"'{name}' is not supported by gptkit serve (leave it out)", name)


def _sampling(body: dict, limits: Limits, max_tokens: int | None) -> dict:
    """The fields completions and chat completions share, checked: model, stop, stream, the sampling settings."""
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else (stop or [])
    if not isinstance(stops, list) or len(stops) > 4 or not all(isinstance(s, str) and s for s in stops):
        raise ApiError(400, "'stop' must be a non-empty string or a list of at most 4 of them", "stop")
    options = _field(body, "stream_options", (dict,), {}, rule='an object like {"include_usage": true}')
    model = _field(body, "model", (str,), rule="a model id (GET /v1/models)")
    if model is None:
        raise ApiError(400, "'model' is required (GET /v1/models lists them)", "model")
    ints, nums = (int,), (int, float)
    p = {
        "model": model, "stop": tuple(stops), "max_tokens": max_tokens,
        "stream": _field(body, "stream", (bool,), False, rule="true or false"),
        "temperature": _field(body, "temperature", nums, TEMPERATURE, rule="a number"),
        "top_p": _field(body, "top_p", nums, TOP_P, rule="a number"),
        "top_k": _field(body, "top_k", ints, None, rule="an integer"),
        "n": _field(body, "n", ints, 1, lambda v: 1 <= v <= limits.max_n, f"an integer from 1 to {limits.max_n}"),
        "seed": _field(body, "seed", ints, None, lambda v: 0 <= v < 2**63, "an integer >= 0"),
        "usage_in_stream": _field(options, "include_usage", (bool,), False, rule="true or false"),
    }
    try:  # the limits `gptkit sample` checks too
        check_sampling(p["temperature"], p["top_k"], p["top_p"], p["max_tokens"] or 0, p["n"])
    except SamplingError as e:
        raise ApiError(400, f"'{e.option}' must be {e.rule}, got {e.value!r}", e.option) from None
    return {**p, "temperature": float(p["temperature"]), "top_p": float(p["top_p"])}


def create_app(registry: Registry, limits: Limits = Limits()) -> FastAPI:
    app = FastAPI(title="gptkit", docs_url=None, redoc_url=None)
    add_error_handlers(app)
    app.add_middleware(BodyLimit, limit=limits.max_body)
    _add_api(app, registry, limits)
    _add_tokenizer_routes(app, registry, limits)
    _add_runs_and_page(app, registry, limits)
    return app


def _add_api(app: FastAPI, registry: Registry, limits: Limits) -> None:
    @app.get("/health")
    async def health():
        loaded = registry.loaded()
        return {"status": "ok", "models": {m: {"running": len(w.running), "waiting": w.queued}
                                           for m, w in loaded.items()}}

    @app.get("/v1/models")
    async def models():
        def listing():  # extensions: a run's served step; whether a model chats, and its context (the page's)
            runs = registry.runs()
            return {m: {**({"step": step} if (step := registry.served_step(m, runs)) is not None else {}),
                        **registry.model_info(m, runs)} for m in registry.ids(runs)}

        extra = await run_in_threadpool(listing)
        return {"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": "gptkit", **more}
                                           for m, more in extra.items()]}

    @app.post("/v1/completions")
    async def completions(request: HttpRequest):
        p = parse_completion(await _body(request), limits)
        worker = await run_in_threadpool(registry.load, p["model"])
        return await _complete(request, worker, p)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: HttpRequest):
        p = parse_chat(await _body(request), limits)
        worker = await run_in_threadpool(registry.load, p["model"])
        return await _chat(request, worker, p, limits.max_tokens)


def _add_tokenizer_routes(app: FastAPI, registry: Registry, limits: Limits) -> None:
    def tokenizer(name: str):
        """A published encoding by name, or a served model's own tokenizer (its run's, its HF folder's)."""
        if name in PRETRAINED_TOKENIZERS:
            from gptkit.tokenizer.load import get_tokenizer

            return get_tokenizer(name)
        if name not in registry.ids():
            raise ApiError(404, f"no tokenizer {name!r}; GET /api/tokenizers lists them", "tokenizer")
        return registry.tokenizer(name)

    @app.get("/api/tokenizers")
    async def list_tokenizers():
        return {"tokenizers": [*PRETRAINED_TOKENIZERS, *await run_in_threadpool(registry.ids)]}

    @app.post("/api/tokenize")
    async def tokenize(request: HttpRequest):
        body = await _body(request)
        text = _field(body, "text", (str,), "", rule="a string")
        if len(text) > limits.max_tokenize_chars:
            raise ApiError(400, f"'text' is {len(text):,} characters; /api/tokenize takes at most "
                           f"{limits.max_tokenize_chars:,}", "text", "text_too_long")
        tok = await run_in_threadpool(tokenizer, _field(body, "tokenizer", (str,), "gpt2", rule="a tokenizer name"))
        return await run_in_threadpool(_user_text, "text", token_spans, tok, text)

    @app.post("/api/detokenize")
    async def detokenize(request: HttpRequest):
        body = await _body(request)
        ids = body.get("ids")
        if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise ApiError(400, "'ids' must be a list of integers", "ids")
        tok = await run_in_threadpool(tokenizer, _field(body, "tokenizer", (str,), "gpt2", rule="a tokenizer name"))
        return {"text": await run_in_threadpool(_user_text, "ids", tok.decode, ids)}

    @app.get("/api/merges")
    async def merges(request: HttpRequest):
        q = _query(request, {"tokenizer", "tokenizer_name", "id"})
        tok = await run_in_threadpool(tokenizer, q.get("tokenizer") or q.get("tokenizer_name") or "gpt2")
        token = q.get("id", "0")
        if not (token.isdigit() and int(token) < tok.vocab_size):
            raise ApiError(400, f"'id' must be a token id from 0 to {tok.vocab_size - 1}, got {token!r}", "id")
        return {"tree": await run_in_threadpool(merge_tree, tok, int(token))}


def _query(request: HttpRequest, known: set[str]) -> dict[str, str]:
    """The query parameters, refusing any this route does not take (rather than ignoring a misspelt one)."""
    q = dict(request.query_params)
    unknown = sorted(set(q) - known)
    if unknown:
        raise ApiError(400, f"unknown query parameter {unknown[0]!r}; this route takes {', '.join(sorted(known))}",
                       unknown[0])
    return q


def _user_text(param: str, fn, *args, **kwargs):
    """fn(*args), a ValueError from the user's text (a character a char vocabulary lacks, an unknown id) answered as
    a 400 naming the field."""
    try:
        return fn(*args, **kwargs)
    except (ValueError, KeyError, IndexError) as e:
        message = " ".join(str(e).split()) or f"'{param}' cannot be encoded with this tokenizer"
        raise ApiError(400, message, param) from None


def _add_runs_and_page(app: FastAPI, registry: Registry, limits: Limits) -> None:
    def run_list():
        out, runs = [], registry.runs()
        for name in runs:
            try:
                path = registry.run_dir(name, runs)
                config = json.loads((path / "config.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):  # a link out of --runs, a config cut short: not listed
                continue
            out.append({"name": name, "config": config, "records": len(registry.metrics.records(path / METRICS))})
        root = registry.runs_root  # as the command line gave it: the page's empty state names it
        return {"runs": out, "runs_dir": None if root is None else str(root)}

    def one_run(name: str):
        path = registry.run_dir(name)
        records = registry.metrics.records(path / METRICS)
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        return {"name": name, "config": config, "metrics": thin(records, limits.max_points), "records": len(records),
                "step": registry.served_step(name), "summary": run_summary(path, config, records)}

    @app.get("/api/runs")
    async def runs():
        return await run_in_threadpool(run_list)

    @app.get("/api/runs/{name:path}")
    async def run(name: str):
        return await run_in_threadpool(one_run, name)

    @app.get("/")
    async def page():
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")


def run_summary(path: Path, config: dict, records: list) -> dict:
    """What the Runs tab says of a run in one line: parameters (from its checkpoint's header), tokens seen and wall
    time (its last evaluation), its best val loss and that step (over every record, not the thinned ones), and the
    run or model it was finetuned from."""
    from gptkit.training.checkpoint import checkpoint_parameters
    from gptkit.training.run_dir import checkpoint_path

    try:
        parameters = checkpoint_parameters(checkpoint_path(path, "auto"))
    except ValueError:  # no checkpoint yet
        parameters = None
    vals = [r for r in records if isinstance(r.get("val_loss"), (int, float))]
    best = min(vals, key=lambda r: r["val_loss"], default=None)
    last = records[-1] if records else {}
    train = config.get("train") if isinstance(config.get("train"), dict) else {}
    return {"parameters": parameters, "tokens": last.get("tokens"), "elapsed_s": last.get("elapsed_s"),
            "best_val": best and best["val_loss"], "best_step": best and best.get("step"),
            "init_from": train.get("init_from") or None}


def thin(records: list, most: int) -> list:
    """At most `most` records, evenly spaced, the first and last kept. Example: thin([0, 1, 2, 3, 4], 3) -> [0, 2, 4]"""
    if len(records) <= most:
        return records
    step = (len(records) - 1) / (most - 1)
    return [records[round(k * step)] for k in range(most)]


def token_spans(tok, text: str) -> dict:
    """Each token of `text`: id, its text (a piece that ends mid-character shows U+FFFD) and its byte span."""
    ids = tok.encode(text, allowed_special="all")
    tokens, at = [], 0
    for i in ids:
        n = len(tok.decode_bytes([i]))
        tokens.append({"id": i, "text": tok.decode([i]), "start": at, "end": at + n})
        at += n
    return {"tokens": tokens, "count": len(ids), "chars": len(text), "bytes": len(text.encode("utf-8"))}


def merge_tree(tok, token: int) -> dict:
    """{"id", "text", "parts": [left, right]} down to single bytes, for a byte-level BPE tokenizer (its merges in id
    order: token 256 + i is merge i); other tokenizers' tokens have no parts."""
    merges = getattr(tok, "merges", None)
    parts = []
    if merges is not None and token >= 256 and token - 256 < len(merges) and token not in tok.special_tokens.values():
        parts = [merge_tree(tok, t) for t in merges[token - 256]]
    return {"id": token, "text": tok.decode_bytes([token]).decode("utf-8", errors="replace"), "parts": parts}


def _encode_prompts(tok, prompts: list[str]) -> list[list[int]]:
    return [_user_text("prompt", tok.encode, text, allowed_special="all") for text in prompts]


async def _complete(request: HttpRequest, worker, p: dict):
    """/v1/completions: each prompt's text continued, n choices each."""
    tok, block = worker.tok, worker.config.block_size
    prompt_ids = await run_in_threadpool(_encode_prompts, tok, p["prompts"])  # never on the event loop
    for ids in prompt_ids:
        if not ids:
            raise ApiError(400, "the prompt is empty; send at least one character", "prompt")
        if len(ids) > block:
            raise ApiError(400, f"the prompt is {len(ids)} tokens; this model's context is {block} tokens",
                           "prompt", "context_length_exceeded")
    stop_tokens = () if tok.eot_token is None else (tok.eot_token,)
    return await _respond(request, worker, p, prompt_ids, stop_tokens, COMPLETION)


async def _chat(request: HttpRequest, worker, p: dict, most: int):
    """/v1/chat/completions: the conversation in the model's chat format, the assistant's reply n times."""
    from gptkit.generate.chat import NO_FORMAT, ContextFull, chat_prompt, stop_tokens

    if worker.chat_format is None:
        raise ApiError(400, f"the model {p['model']!r} {NO_FORMAT}; or call /v1/completions", "model")
    tok, fmt, block = worker.tok, worker.chat_format, worker.config.block_size
    try:
        ids, _ = await run_in_threadpool(chat_prompt, tok, fmt, p["messages"], block, 1, False)
        stops = stop_tokens(tok, fmt)
    except ContextFull as e:
        raise ApiError(400, str(e), "messages", "context_length_exceeded") from None
    except ValueError as e:  # the template refused the conversation (roles out of turn, say)
        raise ApiError(400, str(e), "messages") from None
    if p["max_tokens"] is None:  # OpenAI's default: up to the end of the context, at most `most` (--max-tokens)
        p = {**p, "max_tokens": min(most, max(1, block - len(ids)))}
    return await _respond(request, worker, p, [ids], stops, CHAT)


@dataclass(frozen=True)
class Shape:
    """How an endpoint's replies look: the id's prefix, the object names of a whole reply and of a streamed chunk,
    a choice in each (index, text, finish reason -> dict), and what a stream says first of each choice (or None)."""

    prefix: str
    whole: str
    chunk: str
    choice: Callable
    delta: Callable
    first: Callable | None = None


def _text_choice(i: int, text: str, why: str | None) -> dict:
    return {"text": text, "index": i, "logprobs": None, "finish_reason": why}


COMPLETION = Shape("cmpl", "text_completion", "text_completion", _text_choice, _text_choice)
CHAT = Shape("chatcmpl", "chat.completion", "chat.completion.chunk",
             lambda i, text, why: {"index": i, "message": {"role": "assistant", "content": text, "refusal": None},
                                   "logprobs": None, "finish_reason": why},
             lambda i, text, why: {"index": i, "delta": {"content": text} if text else {}, "logprobs": None,
                                   "finish_reason": why},
             first=lambda i: {"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                              "finish_reason": None})


async def _respond(request: HttpRequest, worker, p: dict, prompt_ids: list[list[int]], stop_tokens: tuple,
                   shape: Shape):
    """Run n choices of each prompt through the worker's engine; the whole reply, or server-sent events."""
    seed = p["seed"] if p["seed"] is not None else secrets.randbelow(2**31)
    n, requests = p["n"], []
    for k, ids in enumerate(prompt_ids):
        requests += [Request(tuple(ids), p["max_tokens"], p["temperature"], p["top_k"],
                             p["top_p"] if p["top_p"] < 1 else None, seed + k * n + j, stop_tokens) for j in range(n)]
    loop, queue = asyncio.get_running_loop(), asyncio.Queue()
    job = Job(requests, p["stop"], lambda item: loop.call_soon_threadsafe(queue.put_nowait, item))
    worker.submit(job)
    head = {"id": f"{shape.prefix}-{secrets.token_hex(12)}", "object": shape.whole, "created": int(time.time()),
            "model": p["model"]}
    usage = {"prompt_tokens": sum(map(len, prompt_ids)), "completion_tokens": 0}
    if p["stream"]:
        return StreamingResponse(_events(job, worker, queue, {**head, "object": shape.chunk}, usage, p, shape),
                                 media_type="text/event-stream")
    texts, finish = [[] for _ in requests], [None] * len(requests)
    watcher = asyncio.create_task(_until_disconnected(request))  # a client that leaves frees its rows at once
    try:
        while None in finish:
            getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({getter, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                return JSONResponse({}, 499)  # nginx's "client closed request": nobody reads it
            item = getter.result()
            if isinstance(item, Exception):
                raise ApiError(500, f"generation failed: {item}")
            i, text, count, why = item
            texts[i].append(text)
            usage["completion_tokens"] += count
            finish[i] = why
    finally:
        watcher.cancel()
        if None in finish:
            worker.cancel(job)
    choices = [shape.choice(i, "".join(t), f) for i, (t, f) in enumerate(zip(texts, finish))]
    return {**head, "choices": choices, "usage": _usage(usage)}


async def _until_disconnected(request: HttpRequest) -> None:
    """Returns when the client has gone (its body was read already, so the next message is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _usage(u: dict) -> dict:
    return {**u, "total_tokens": u["prompt_tokens"] + u["completion_tokens"]}


async def _events(job, worker, queue, head, usage, p, shape: Shape):
    """Server-sent events: (for chat, each choice's role first) a chunk per piece of text, the finish reasons,
    [optionally] usage, then [DONE]."""
    left = len(job.requests)
    try:
        if shape.first:
            for i in range(left):
                yield f"data: {json.dumps({**head, 'choices': [shape.first(i)]})}\n\n"
        while left:
            item = await queue.get()
            if isinstance(item, Exception):
                yield f"data: {json.dumps({'error': {'message': f'generation failed: {item}'}})}\n\n"
                return
            i, text, count, why = item
            usage["completion_tokens"] += count
            left -= why is not None
            if text or why:
                yield f"data: {json.dumps({**head, 'choices': [shape.delta(i, text, why)]})}\n\n"
        if p["usage_in_stream"]:
            yield f"data: {json.dumps({**head, 'choices': [], 'usage': _usage(usage)})}\n\n"
        yield "data: [DONE]\n\n"
    finally:
        if left:  # the client went away: its rows leave the batch
            worker.cancel(job)
