"""Request and response bodies of the HTTP API (Pydantic), with their limits."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "MAX_MESSAGE", "AnswerOut", "ErrorDetail", "ErrorOut", "FeedbackIn", "FeedbackOut", "HealthOut", "ItemOut", "MessageIn",
    "ReadyOut", "RecommendIn", "RecommendOut", "SessionIn", "SessionOut",
]

MAX_MESSAGE = 2000  # characters
_ID = Field(min_length=1, max_length=200)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SessionIn(_Strict):
    user_id: str | None = Field(
        default=None, min_length=1, max_length=200,
        description="A user of the dataset (their history seeds the session); omit for a new user.",
    )


class MessageIn(_Strict):
    message: str = Field(min_length=1, max_length=MAX_MESSAGE,
                         description='What the user says, e.g. "running shoes under $60".')
    exclude_shown: bool = Field(default=False, description="Leave out items shown earlier (\"more\").")

    @field_validator("message")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("message must not be empty")
        return value.strip()


class FeedbackIn(_Strict):
    item_id: str = _ID
    kind: Literal["click", "like", "dislike", "purchase"]


class RecommendIn(_Strict):
    user_id: str | None = Field(default=None, min_length=1, max_length=200)
    session_id: str | None = Field(default=None, min_length=1, max_length=64,
                                   description="Use this session's history (with its feedback).")
    k: int = Field(default=10, ge=1, le=100)

    @model_validator(mode="after")
    def _one_of(self) -> RecommendIn:
        if (self.user_id is None) == (self.session_id is None):
            raise ValueError("give exactly one of user_id and session_id")
        return self


class HistoryItem(BaseModel):
    item_id: str
    title: str
    event: str | None = None


class SessionOut(BaseModel):
    session_id: str
    user_id: str | None
    dataset: str
    turns: int
    history_length: int
    recent_history: list[HistoryItem]
    constraints: list[str]
    shown: list[str]
    last_shown: list[str]
    liked: list[str]
    disliked: list[str]


class AnswerOut(BaseModel):
    session_id: str
    turn: int
    degraded: bool = Field(description="True when the LLM or the index was down for this answer; "
                                       "answer.degraded says what and how it answered instead.")
    answer: dict[str, Any] = Field(description="The agent's answer: text, recommendations with "
                                               "evidence and explanations, the tool trace.")


class FeedbackOut(BaseModel):
    session_id: str
    event_id: int
    item_id: str
    kind: str
    history_length: int
    liked: list[str]
    disliked: list[str]


class ItemOut(BaseModel):
    item_id: str
    title: str
    category: str
    brand: str | None
    price: float | None
    description: str
    attributes: dict[str, str]


class RecommendOut(BaseModel):
    user: str | None
    dataset: str
    retriever: str
    degraded: list[str]
    recommendations: list[dict[str, Any]]


class HealthOut(BaseModel):
    status: Literal["ok"]


class ReadyOut(BaseModel):
    ready: bool
    checks: dict[str, str]


class ErrorDetail(BaseModel):
    code: str
    message: str
    request_id: str | None = None
    details: list[dict[str, Any]] | None = None  # per field, for validation errors


class ErrorOut(BaseModel):
    """Every 4xx answer: ``{"error": {"code", "message", "request_id"}}``."""

    error: ErrorDetail
