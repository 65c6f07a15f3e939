"""The end-of-run invariant checker: asks every node, fails loudly on any disagreement.

Checks (each names what broke and where):

1. **state roots**: every node reports the same state root at every height they have all
   applied;
2. **no lost action**: every transaction id the RPC acknowledged is committed, or rejected or
   expired with a reason the RPC reports — none is unknown to the network;
3. **no double fill**: no transaction id appears in two committed blocks;
4. **conservation**: on every node, ``Σ collateral − Σ open notional + withdrawn`` equals the
   genesis total, and long open interest equals short open interest;
5. **liveness**: after each fault healed, the network committed again within the bound
   (``2 × view timeout`` plus the time a restarted process needs to come back);
6. **scenario checks**: what the scenario itself checked while it ran (e.g. that a network
   split in halves committed nothing, and that every node caught up after a partition healed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import trio

STATUS_CHUNK = 500


@dataclass
class Report:
    ok: bool = True
    lines: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def fail(self, line: str) -> None:
        self.ok = False
        self.lines.append("FAIL " + line)

    def note(self, line: str) -> None:
        self.lines.append("ok   " + line)


async def _get(client: httpx.AsyncClient, url: str, **params: Any) -> Any:
    """GET with polite retries when the node rate-limits us (429)."""
    for attempt in range(20):
        r = await client.get(url, params=params or None, timeout=10.0)
        if r.status_code != 429:
            break
        await trio.sleep(0.1 * (attempt + 1))
    r.raise_for_status()
    return r.json()


async def check_network(
    client: httpx.AsyncClient,
    rpc_urls: Sequence[str],
    acked: dict[bytes, int],
    commit_gaps_s: Sequence[tuple[str, float]] = (),
    gap_bound_s: float | None = None,
    scenario_checks: Sequence[tuple[bool, str]] = (),
) -> Report:
    rep = Report()
    statuses = [await _get(client, u + "/v1/status") for u in rpc_urls]
    heights = [int(s["height"]) for s in statuses]
    common = min(heights)
    rep.figures["heights"] = heights
    rep.figures["common_height"] = common

    # 1. state roots at every common height
    roots: list[dict[int, str]] = []
    for u in rpc_urls:
        got: dict[int, str] = {}
        h = 1
        while h <= common:
            doc = await _get(client, u + "/v1/state_roots", **{"from": h, "to": common})
            rows = doc["roots"]
            if not rows:
                break
            for row in rows:
                got[int(row["height"])] = row["state_root"]
            h = int(rows[-1]["height"]) + 1
        roots.append(got)
    mismatches = 0
    for h in range(1, common + 1):
        values = {r.get(h) for r in roots}
        if len(values) != 1 or None in values:
            mismatches += 1
            if mismatches <= 3:
                rep.fail(
                    f"state root differs at height {h}: "
                    + ", ".join(
                        f"node{i}={(r.get(h) or 'missing')[:16]}" for i, r in enumerate(roots)
                    )
                )
    if not mismatches:
        rep.note(f"{len(rpc_urls)} nodes agree on the state root at all {common} common heights")

    # 2. every acknowledged action is accounted for
    ids = sorted(acked)
    counts: dict[str, int] = {}
    reasons: dict[str, int] = {}
    unknown: list[bytes] = []
    pending: list[bytes] = []
    for i in range(0, len(ids), STATUS_CHUNK):
        chunk = ids[i : i + STATUS_CHUNK]
        r = await client.post(
            rpc_urls[0] + "/v1/actions/status",
            json={"tx_ids": [t.hex() for t in chunk]},
            timeout=30.0,
        )
        r.raise_for_status()
        for tx_id, st in zip(chunk, r.json()["statuses"], strict=True):
            if st is None:
                unknown.append(tx_id)
                continue
            counts[st["status"]] = counts.get(st["status"], 0) + 1
            if st["status"] == "rejected":
                reasons[st["reason"]] = reasons.get(st["reason"], 0) + 1
            if st["status"] == "pending":
                pending.append(tx_id)
    if unknown:  # an action may be known only to the node that took it (e.g. it expired there)
        still: list[bytes] = []
        for tx_id in unknown:
            url = rpc_urls[acked[tx_id] % len(rpc_urls)]
            r = await client.get(url + f"/v1/actions/{tx_id.hex()}", timeout=10.0)
            if r.status_code == 200:
                st = r.json()
                counts[st["status"]] = counts.get(st["status"], 0) + 1
            else:
                still.append(tx_id)
        unknown = still
    rep.figures["acked"] = len(ids)
    rep.figures["acked_outcomes"] = counts
    rep.figures["rejection_reasons"] = reasons
    if unknown:
        rep.fail(
            f"{len(unknown)} acknowledged actions are unknown to the network "
            f"(first {unknown[0].hex()[:16]}, acknowledged by node{acked[unknown[0]]})"
        )
    else:
        rep.note(
            f"all {len(ids)} acknowledged actions accounted for: {counts}; "
            f"rejected in blocks by reason: {reasons}"
        )

    # 3. no transaction in two blocks
    seen: dict[str, int] = {}
    doubles = 0
    blocks: list[dict[str, Any]] = []
    h = 1
    while h <= common:
        page = await _get(client, rpc_urls[0] + "/v1/blocks", **{"from": h, "to": common})
        if not page["blocks"]:
            break
        blocks.extend(page["blocks"])
        h = int(page["blocks"][-1]["height"]) + 1
    for block in blocks:
        h = int(block["height"])
        for tx_id in block["tx_ids"]:
            if tx_id in seen:
                doubles += 1
                if doubles <= 3:
                    rep.fail(f"tx {tx_id[:16]} in blocks {seen[tx_id]} and {h}")
            seen[tx_id] = h
    rep.figures["committed_txs"] = len(seen)
    if not doubles:
        rep.note(f"no transaction in two blocks ({len(seen)} committed transactions)")

    # 4. conservation on every node
    for i, u in enumerate(rpc_urls):
        totals = await _get(client, u + "/v1/ledger/totals")
        if not totals["conserved"] or not totals["open_interest_balanced"]:
            rep.fail(f"node{i} ledger totals broken: {totals}")
    if rep.ok:
        rep.note("collateral conserved and open interest balanced on every node")

    # 5. liveness after faults
    if commit_gaps_s and gap_bound_s is not None:
        worst = max(g for _, g in commit_gaps_s)
        rep.figures["worst_commit_gap_s"] = round(worst, 3)
        rep.figures["faults"] = [(what, round(g, 3)) for what, g in commit_gaps_s]
        for what, gap in commit_gaps_s:
            if gap > gap_bound_s:
                rep.fail(f"after {what}: no commit for {gap:.2f} s (bound {gap_bound_s:.2f} s)")
        if worst <= gap_bound_s:
            rep.note(
                f"committed again within {worst:.2f} s of each of {len(commit_gaps_s)} faults "
                f"(bound {gap_bound_s:.2f} s)"
            )

    # 6. what the scenario checked as it ran
    for ok, line in scenario_checks:
        (rep.note if ok else rep.fail)(line)
    return rep
