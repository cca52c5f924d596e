"""Model settings: the ``[agent]`` table of a config file, ``CLOUDISENSE_*`` variables, then flags.

=================  ===========================  ==========================  =========
setting            config ``[agent]``           environment                 flag
=================  ===========================  ==========================  =========
model              ``model``                    ``CLOUDISENSE_MODEL``       ``--model``
api_base           ``api_base``                 ``CLOUDISENSE_API_BASE``    ``--api-base``
api_key_env        ``api_key_env``              ``CLOUDISENSE_API_KEY_ENV`` ``--api-key-env``
timeout            ``timeout``                  ``CLOUDISENSE_MODEL_TIMEOUT`` ``--model-timeout``
max_retries        ``max_retries``              ``CLOUDISENSE_MODEL_RETRIES`` ``--retries``
budget             ``budget``                   ``CLOUDISENSE_BUDGET``      ``--budget``
temperature        ``temperature``              ``CLOUDISENSE_TEMPERATURE`` ``--temperature``
stream             ``stream``                   ``CLOUDISENSE_STREAM``      ``--stream/--no-stream``
=================  ===========================  ==========================  =========

``api_key_env`` names the variable that holds the key (the key itself never
sits in a config file, a session record or ``--print-config``).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

ENV = {"model": "CLOUDISENSE_MODEL", "api_base": "CLOUDISENSE_API_BASE", "api_key_env": "CLOUDISENSE_API_KEY_ENV",
       "timeout": "CLOUDISENSE_MODEL_TIMEOUT", "max_retries": "CLOUDISENSE_MODEL_RETRIES",
       "budget": "CLOUDISENSE_BUDGET", "temperature": "CLOUDISENSE_TEMPERATURE", "stream": "CLOUDISENSE_STREAM"}


FLAGS = {"model": "--model", "api_base": "--api-base", "api_key_env": "--api-key-env", "timeout": "--model-timeout",
         "max_retries": "--retries", "budget": "--budget", "temperature": "--temperature", "stream": "--stream"}


class SettingsError(ValueError):
    """A model setting is wrong (the message names it and where it came from)."""


class ModelSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field("offline", description="litellm model string (openai/gpt-4o-mini, ollama/llama3, "
                                              "hosted_vllm/…) or offline")
    api_base: str | None = Field(None, description="base URL of an OpenAI-compatible server, e.g. "
                                                   "http://127.0.0.1:8080/v1 (vLLM, llama.cpp, Ollama, LM Studio)")
    api_key_env: str | None = Field(None, description="name of the environment variable holding the API key")
    timeout: float = Field(30.0, gt=0, description="seconds one model request may take")
    max_retries: int = Field(2, ge=0, le=10, description="retries of a failed or timed-out request")
    budget: float = Field(120.0, gt=0, description="wall-clock seconds for the whole plan: every turn, retry "
                                                   "and wait")
    temperature: float = Field(0.0, ge=0, le=2)
    stream: bool = Field(False, description="stream the model's text as it arrives")

    @field_validator("api_base")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError(f"{v!r} is not an http(s):// URL")
        return v or None

    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None

    def public(self) -> dict[str, Any]:
        """For ``--print-config``: the settings, with whether the key variable is set (never the key)."""
        d = self.model_dump(mode="json")
        d["api_key_set"] = bool(self.api_key()) if self.api_key_env else None
        return d


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, var in ENV.items():
        v = env.get(var)
        if v not in (None, ""):
            out[key] = v.lower() in ("1", "true", "yes", "on") if key == "stream" else v
    return out


def load_model_settings(config: str | os.PathLike[str] | None = None, flags: Mapping[str, Any] | None = None,
                        env: Mapping[str, str] | None = None) -> ModelSettings:
    """Config file ``[agent]``, then the environment, then flags (a flag left at None doesn't count)."""
    merged: dict[str, Any] = {}
    where: dict[str, str] = {}
    if config:
        try:
            doc = tomllib.loads(Path(config).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise SettingsError(f"{config}: {e}") from None
        table = doc.get("agent", {})
        if not isinstance(table, dict):
            raise SettingsError(f"{config}: [agent] is not a table")
        merged.update(table)
        where.update(dict.fromkeys(table, f"{config} [agent]"))
    from_env = _from_env(os.environ if env is None else env)
    merged.update(from_env)
    where.update({k: ENV[k] for k in from_env})
    f = {k: v for k, v in (flags or {}).items() if v is not None}
    merged.update(f)
    where.update({k: FLAGS.get(k, k) for k in f})
    try:
        return ModelSettings.model_validate(merged)
    except ValidationError as ex:
        err = ex.errors()[0]
        key = str(err["loc"][0]) if err["loc"] else "?"
        raise SettingsError(f"model setting {key} ({where.get(key, 'default')}): {err['msg']}") from None


def build_model(settings: ModelSettings) -> Any:
    """The model the settings name: the offline rules planner, or litellm with these settings."""
    from ._model import LiteLLMModel
    from ._offline import OfflineModel

    if not settings.model or settings.model == "offline":
        return OfflineModel()
    return LiteLLMModel(settings.model, api_base=settings.api_base, api_key=settings.api_key(),
                        timeout=settings.timeout, max_retries=settings.max_retries,
                        temperature=settings.temperature, stream=settings.stream)
