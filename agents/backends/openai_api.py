"""The OpenAI-compatible backend: any server that answers ``/v1/chat/completions`` (OpenAI itself,
``vllm serve``, llama.cpp's server, a gateway), for teachers that are closed APIs or big models
served elsewhere.

Each prompt is one request; a batch is sent all at once, at most ``concurrency`` requests in
flight per model. Rate limits (429), server errors (5xx), timeouts, dropped connections and
answers that are not a chat completion are retried with exponential backoff; after the last
attempt the turn fails with the reason and the run goes on. ``call_budget`` caps the requests one
model makes (retries included), so a runaway run cannot spend without bound. The API key is read
from the environment variable ``api_key_env`` names, where the model runs; it is never written
anywhere and is cut out of every error text.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from typing import Sequence

from pydantic import Field

from academe.agents.backends.base import ModelSpec
from academe.agents.records import Prompt, Record, Reply
from academe.agents.redaction import redact

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
LONGEST_WAIT_S = 30.0


class OpenAISettings(Record):
    """``options`` of a model of kind ``openai``; its ``path`` is the model's name on the server."""

    base_url: str = Field("https://api.openai.com/v1", pattern=r"^https?://", description="the server's /v1 address")
    api_key_env: str = Field("OPENAI_API_KEY", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                             description="the environment variable holding the API key (never the key itself)")
    concurrency: int = Field(8, ge=1, le=4096, description="requests in flight at once, per model")
    timeout_s: float = Field(120.0, gt=0, le=3600, description="per request")
    max_attempts: int = Field(4, ge=1, le=20, description="tries per turn, the first included")
    backoff_s: float = Field(1.0, ge=0, le=60, description="wait before the 2nd try; doubles after each")
    call_budget: int | None = Field(None, ge=0, description="requests this model may make in a run (None: no cap)")


class CallBudgetSpent(Exception):
    pass


class Garbage(Exception):
    """The server answered 200 with something that is not a chat completion."""


class OpenAIBackend:
    """Chat completions over HTTP with the official async client."""

    version = 0

    def __init__(self, model: str, settings: OpenAISettings, name: str | None = None):
        self.model, self.settings = model, settings
        self.model_name = name or model
        self.api_key = api_key(settings)
        self.calls = 0
        self._loop = self._client = self._slots = None

    # ---- Backend ----
    def generate(self, prompts: Sequence[Prompt]) -> list[Reply]:
        return asyncio.run(self.agenerate(prompts))

    async def agenerate(self, prompts: Sequence[Prompt]) -> list[Reply]:
        return list(await asyncio.gather(*(self._answer(p) for p in prompts)))

    # ---- one turn ----
    async def _answer(self, prompt: Prompt) -> Reply:
        start = time.perf_counter()
        client, slots = self._connection()
        reason = ""
        for attempt in range(1, self.settings.max_attempts + 1):
            try:
                async with slots:
                    return self._reply(await self._call(client, prompt), start)
            except CallBudgetSpent:
                reason = f"call budget spent: model {self.model_name!r} may make {self.settings.call_budget} requests"
                break
            except Exception as exc:
                reason, wait = self._failure(exc, attempt)
                if wait is None or attempt == self.settings.max_attempts:
                    break
                await asyncio.sleep(wait)
        return Reply(text="", prompt_tokens=0, completion_tokens=0, finish_reason="error", model=self.model_name,
                     model_version=self.version, latency_s=time.perf_counter() - start,
                     error=self._clean(f"{reason} (after {attempt} attempt(s))"))

    async def _call(self, client, prompt: Prompt):
        if self.settings.call_budget is not None and self.calls >= self.settings.call_budget:
            raise CallBudgetSpent()
        self.calls += 1
        sampling = prompt.sampling
        response = await client.chat.completions.create(
            model=self.model, messages=[m.model_dump() for m in prompt.messages],
            max_tokens=sampling.max_new_tokens, temperature=sampling.temperature, top_p=sampling.top_p,
            seed=prompt.seed % 2**31)
        choices = getattr(response, "choices", None)
        if not choices or not isinstance(getattr(choices[0].message, "content", None), str):
            raise Garbage(f"the server's answer is not a chat completion: {str(response)[:200]!r}")
        return response

    def _reply(self, response, start: float) -> Reply:
        choice, usage = response.choices[0], response.usage
        return Reply(text=choice.message.content.strip(),
                     prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
                     completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
                     finish_reason="length" if choice.finish_reason == "length" else "stop",
                     model=self.model_name, model_version=self.version, latency_s=time.perf_counter() - start)

    def _failure(self, exc: Exception, attempt: int) -> tuple[str, float | None]:
        """Why a request failed, and how long to wait before the next try (None: do not retry)."""
        import openai

        status = getattr(exc, "status_code", None)
        if isinstance(exc, openai.APITimeoutError):
            reason = f"no answer within {self.settings.timeout_s:g} s"
        elif isinstance(exc, openai.APIConnectionError):
            reason = f"cannot reach {self.settings.base_url}: {exc.__cause__ or exc}"
        elif isinstance(exc, openai.APIStatusError):
            reason = f"the server answered {status}: {str(exc)[:300]}"
        elif isinstance(exc, (Garbage, openai.APIResponseValidationError, ValueError)):
            reason = str(exc)[:300] if isinstance(exc, Garbage) else f"the server's answer does not parse: {exc}"[:300]
        else:
            return f"{type(exc).__name__}: {exc}", None
        if isinstance(exc, openai.APIStatusError) and status not in RETRY_STATUS:
            return reason, None  # a wrong key or a bad request does not get better by asking again
        wait = min(LONGEST_WAIT_S, self.settings.backoff_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
        retry_after = _retry_after(exc)
        return reason, max(wait, retry_after) if retry_after is not None else wait

    def _clean(self, text: str) -> str:
        return redact(text.replace(self.api_key, f"<${self.settings.api_key_env}>") if self.api_key else text)

    def _connection(self):
        """The client and request slots of the running event loop (an asyncio client is bound to
        the loop it first ran on; a program's stages each run their own loop)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            from openai import AsyncOpenAI

            self._loop = loop
            self._client = AsyncOpenAI(base_url=self.settings.base_url, api_key=self.api_key,
                                       timeout=self.settings.timeout_s, max_retries=0)
            self._slots = asyncio.Semaphore(self.settings.concurrency)
        return self._client, self._slots


def _retry_after(exc: Exception) -> float | None:
    """The server's Retry-After, in seconds, when it sent one (capped)."""
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return min(LONGEST_WAIT_S, float(value)) if value is not None else None
    except ValueError:
        return None


def api_key(settings: OpenAISettings) -> str:
    key = os.environ.get(settings.api_key_env)
    if not key:
        raise ValueError(f"options.api_key_env: the environment variable ${settings.api_key_env} that should hold "
                         "the API key is not set (set it where the model runs; a local server without keys "
                         "accepts any value)")
    return key


def load_openai(spec: ModelSpec) -> OpenAIBackend:
    return OpenAIBackend(spec.path, spec.settings(), name=spec.name)


def check_openai(spec: ModelSpec) -> None:
    api_key(spec.settings())
