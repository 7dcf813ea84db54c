"""Several servers of one model (`NAME@URL1,URL2,...`) behind one backend identity.

The pool only holds its members: `LLMClient` routes every attempt of its one retry loop to
one of them, with a separate in-flight limit and pacer per member, and benches members that
keep failing (see llm/client.py). The pool's identity, which the request cache is keyed on,
names the model and the set of its endpoints (llm/spec.py: `pool_identity`), so a cached
answer does not depend on which endpoint gave it.
"""

from __future__ import annotations

from collections.abc import Sequence

from synthcodec.llm.base import Backend, Completion, Request, gives_token_logprobs


class PoolBackend:
    def __init__(self, members: Sequence[Backend], identity: str) -> None:
        if not members:
            raise ValueError("a pool needs at least one endpoint")
        self.members = list(members)
        self.identity = identity
        self.supports_json_schema = all(m.supports_json_schema for m in self.members)
        self.grammar_json = all(m.grammar_json for m in self.members)
        self.scores_continuations = all(getattr(m, "scores_continuations", False)
                                        for m in self.members)
        self.embeds = all(getattr(m, "embeds", False) for m in self.members)
        self.token_logprobs = all(gives_token_logprobs(m) for m in self.members)
        # Each member gets its own in-flight limit (LLMClient's Endpoint); none for the pool.
        self.max_concurrency: int | None = None

    def __repr__(self) -> str:
        return f"PoolBackend({self.identity!r}, {len(self.members)} endpoints)"

    async def complete(self, request: Request) -> Completion:
        """One attempt on the first member. LLMClient never calls this: it sends every
        attempt to a member itself, by load and health; this keeps the pool a Backend for
        anything that calls one directly."""
        return await self.members[0].complete(request)

    async def aclose(self) -> None:
        for member in self.members:
            await member.aclose()
