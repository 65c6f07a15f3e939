"""Sequencer election: ECVRF tickets rank the validators of each epoch; timeouts rotate backups.

Theory of operation (the exact rule and why every honest replica agrees are in
``docs/protocol/consensus.md``; ``E`` is ``timing.epoch_views``, ``start(e) = e·E``):

* **Tickets.** For epoch ``e ≥ 2`` validator ``i`` publishes ``VrfTicket(e, i, π)`` with
  ``π = vrf_prove(sk_i, ticket_alpha(chain_id, e, seed_e))``. Tickets for ``e`` are valid only in
  blocks of epoch ``e − 2``.
* **Seed.** ``seed_e = SHA-256(DOMAIN_TICKET ‖ chain_id ‖ CBOR([e, [[i, β_i], …]]))`` over the
  VRF outputs ``β`` of the epoch ``e − 1`` tickets on the chain (blocks of epoch ``e − 3``,
  sorted by ``i``). It depends only on blocks with view ``< start(e − 2)``, so it is fixed
  before any ticket for ``e`` can be made, and VRF outputs are unique: nobody can grind it.
* **Ranking.** Each validator's draw ``u_i`` is the first 32 bytes of its ``β`` (big-endian,
  plus one) if its ticket for ``e`` is on the chain, else of ``SHA-512("fallback" ‖ seed_e ‖ i)``.
  Validators are ranked by ``u_i / w_i`` ascending (compared exactly as ``u_a·w_b < u_b·w_a``),
  ties by index. Rank 0 is the epoch's sequencer; the rest are its backups in order.
* **Reputation.** A chain that goes from block ``P`` to a block of view ``> P.view + 1``, with
  ``P.view + 2`` still in ``P``'s epoch, blames ``P.proposer`` for view ``P.view + 1``: on
  ``P``'s chain that validator both led that view and was to certify its block (same epoch,
  same ``k``), and the view timed out. The validators blamed for a view in
  ``[start(e − 3), start(e))`` on the chain are *demoted* in epoch ``e``: they keep their VRF
  order among themselves but rank after every other validator.
* **Leader of a view.** For a block at view ``v`` (epoch ``e``) on top of parent ``P``, with
  ``k`` = views of ``[start(e), v)`` holding no block of ``P``'s chain (views that timed out):
  ``leader(v, P) = order_e(P)[k mod n]``, ``order_e`` being the ranking with the demoted
  validators moved last. While the sequencer is healthy every view of its epoch holds a block,
  ``k = 0``, and it leads them all; each timed-out view moves leadership one place down.

The VRF inputs are in ``P``'s chain below view ``start(e − 1)``, the reputation's in the chain
below view ``start(e)``; results are cached by (epoch, anchor block), so the per-proposal cost
is a dictionary lookup and a short walk.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator

import cbor2

from .block_tree import REPUTATION_EPOCHS, TICKET_LEAD_EPOCHS, BlockTree, TreeNode
from .crypto import DOMAIN_TICKET, sha256, signing_bytes
from .messages import Block, VrfTicket, ticket_alpha
from .quorum import ValidatorSet

__all__ = ["Election", "InvalidTicket", "MissingHistory"]


def draw_value(beta: bytes) -> int:
    """A validator's draw: the first 32 bytes of a VRF output (or fallback), big-endian, + 1."""
    return int.from_bytes(beta[:32], "big") + 1


def fallback_draw(seed: bytes, index: int) -> bytes:
    """The draw of a validator whose ticket is not on the chain: public, fixed by the seed."""
    return hashlib.sha512(b"fallback" + seed + index.to_bytes(2, "big")).digest()


def rank_by_draw(draws: list[tuple[int, int, int]]) -> tuple[int, ...]:
    """Order ``(draw, weight, index)`` by ``draw / weight`` ascending, exactly, ties by index.

    ``a`` ranks before ``b`` iff ``draw_a · weight_b < draw_b · weight_a``: integers only.
    """

    def compare(a: tuple[int, int, int], b: tuple[int, int, int]) -> int:
        lhs, rhs = a[0] * b[1], b[0] * a[1]
        if lhs != rhs:
            return -1 if lhs < rhs else 1
        return -1 if a[2] < b[2] else 1

    return tuple(d[2] for d in sorted(draws, key=functools.cmp_to_key(compare)))


def reputation_order(ranking: tuple[int, ...], demoted: frozenset[int]) -> tuple[int, ...]:
    """``ranking`` with the ``demoted`` validators moved last, each part in its VRF order.

    A stable partition, not a new draw: no one's relative place among the healthy changes, so
    the VRF alone still decides which healthy validator leads."""
    if not demoted:
        return ranking
    return tuple(i for i in ranking if i not in demoted) + tuple(i for i in ranking if i in demoted)


class InvalidTicket(ValueError):
    def __init__(self, validator: int, epoch: int, reason: str) -> None:
        super().__init__(f"ticket of validator {validator} for epoch {epoch}: {reason}")
        self.validator, self.epoch, self.reason = validator, epoch, reason


class MissingHistory(LookupError):
    """The chain below a block is not known far enough back to elect (sync or longer Start)."""


class Election:
    def __init__(self, vset: ValidatorSet, tree: BlockTree, epoch_views: int) -> None:
        self.vset = vset
        self.tree = tree
        self.epoch_views = epoch_views
        self.chain_id = vset.chain_id
        self._seeds: dict[tuple[int, bytes], bytes] = {}
        self._rankings: dict[tuple[int, bytes], tuple[int, ...]] = {}
        self._valid_tickets: dict[tuple[int, bytes, bytes], bool] = {}
        self._demoted: dict[tuple[int, bytes], frozenset[int]] = {}

    def epoch(self, view: int) -> int:
        return view // self.epoch_views

    def start(self, epoch: int) -> int:
        return epoch * self.epoch_views

    # -- chain data -----------------------------------------------------------------------

    def _anchor(self, tip: TreeNode, view_bound: int) -> TreeNode:
        anchor = self.tree.ancestor_below(tip, view_bound)
        if anchor is None:
            raise MissingHistory(f"no ancestor of {tip.hash.hex()[:16]} below view {view_bound}")
        return anchor

    def _walk(self, node: TreeNode, min_view: int) -> Iterator[TreeNode]:
        """``node`` and its ancestors with view ``≥ min_view``; raises if the chain is cut."""
        cur = node
        while cur.view >= min_view:
            yield cur
            if cur.parent is None:
                return
            nxt = self.tree.get(cur.parent)
            if nxt is None:
                raise MissingHistory(f"chain below height {cur.height} is not held")
            cur = nxt

    def _tickets_in_window(self, anchor: TreeNode, epoch: int) -> dict[int, bytes]:
        """VRF outputs of tickets for ``epoch`` in blocks of epoch ``epoch − 2`` below anchor."""
        window = epoch - TICKET_LEAD_EPOCHS
        if window < 0:
            return {}
        found: dict[int, bytes] = {}
        for node in self._walk(anchor, self.start(window)):
            for validator, (t_epoch, beta) in node.tickets.items():
                if t_epoch == epoch:
                    found[validator] = beta
        return found

    def seed(self, epoch: int, tip: TreeNode) -> bytes:
        """``seed_epoch`` as seen from a chain through ``tip`` (any block of view ≥ the
        ticket window's start, or its parent)."""
        anchor = self._anchor(tip, self.start(epoch - TICKET_LEAD_EPOCHS)) if epoch >= 3 else None
        key = (epoch, anchor.hash if anchor is not None else b"")
        cached = self._seeds.get(key)
        if cached is not None:
            return cached
        prev = self._tickets_in_window(anchor, epoch - 1) if anchor is not None else {}
        body = cbor2.dumps([epoch, [[i, prev[i]] for i in sorted(prev)]], canonical=True)
        seed = sha256(signing_bytes(DOMAIN_TICKET, self.chain_id, body))
        self._seeds[key] = seed
        return seed

    def ranking(self, epoch: int, tip: TreeNode) -> tuple[int, ...]:
        """Validator indices, sequencer first, for ``epoch`` on the chain through ``tip``."""
        anchor = self._anchor(tip, self.start(epoch - 1)) if epoch >= 2 else self.tree.genesis
        key = (epoch, anchor.hash)
        cached = self._rankings.get(key)
        if cached is not None:
            return cached
        seed = self.seed(epoch, anchor)
        betas = self._tickets_in_window(anchor, epoch)
        draws = []
        for m in self.vset.members:
            beta = betas.get(m.index)
            if beta is None:
                beta = fallback_draw(seed, m.index)
            draws.append((draw_value(beta), m.weight, m.index))
        ranking = rank_by_draw(draws)
        if len(self._rankings) > 256:
            self._rankings.clear()
            self._seeds.clear()
        self._rankings[key] = ranking
        return ranking

    # -- reputation -----------------------------------------------------------------------

    def failed_leader(self, block: TreeNode, next_view: int) -> int | None:
        """The validator a chain blames when ``block`` is followed on it by a block at
        ``next_view``: ``block``'s proposer, if ``block.view + 1`` timed out (is below
        ``next_view``) and ``block.view + 2`` is still in ``block``'s epoch.

        Then both jobs of that view were the proposer's: leading it (the order is fixed within
        an epoch on a chain and no view timed out in between, so its rank ``k`` is unchanged)
        and certifying its block (the votes go to the leader of ``block.view + 2``, the same
        rank again). So the record needs no election to read back, and a restarted replica
        rebuilds it from the blocks alone. At an epoch's last view the certifier is the next
        epoch's sequencer, so a timeout there blames no one. A live leader cannot be framed
        after GST: a record needs a TC for its view, and f Byzantine timeouts neither form one
        nor make an honest replica join."""
        after = block.view + 1
        if block.proposer < 0 or after >= next_view:
            return None
        if self.epoch(after + 1) != self.epoch(block.view):
            return None
        return block.proposer

    def _failures(self, epoch: int, tail: TreeNode) -> frozenset[int]:
        """Validators blamed on the chain ending in ``tail`` (the last block before ``epoch``,
        followed by one of ``epoch``) for a view in ``[start(epoch − REPUTATION_EPOCHS),
        start(epoch))``. Reads back to the highest block of view ``≤`` that window's start."""
        low = self.start(max(0, epoch - REPUTATION_EPOCHS))
        found: set[int] = set()
        failed = self.failed_leader(tail, self.start(epoch))
        if failed is not None and tail.view + 1 >= low:
            found.add(failed)  # recorded by the epoch's first block, whichever it is
        node = tail
        while node.parent is not None and node.view > low:
            below = self.tree.get(node.parent)
            if below is None:
                raise MissingHistory(f"chain below height {node.height} is not held")
            failed = self.failed_leader(below, node.view)
            if failed is not None and below.view + 1 >= low:
                found.add(failed)
            node = below
        return frozenset(found)

    def _boundary_suspects(self, epoch: int, tail: TreeNode, parent: TreeNode) -> frozenset[int]:
        """When the previous epoch's last view timed out on this chain, the two validators
        that view needed: its leader (``tail``'s proposer, when ``tail`` is the view before)
        and the certifier of its block, the first of this epoch's order without them (the
        votes of an epoch's last view go to the next epoch's first leader).

        Which of them failed is not on the chain, so neither is blamed in later epochs; both
        only rank last in this one. Without this, a sequencer that stops at the end of an
        epoch and comes first in the next, or a crashed validator that comes first in the
        next, costs two view timeouts there (the second one doubled): ~3.5 base timeouts."""
        last = self.start(epoch) - 1
        if tail.view >= last:
            return frozenset()
        base = reputation_order(self.ranking(epoch, parent), self._failures(epoch, tail))
        suspects = {base[0]}
        if tail.view == last - 1 and tail.proposer >= 0:
            suspects.add(tail.proposer)
        return frozenset(suspects)

    def demoted(self, epoch: int, parent: TreeNode) -> frozenset[int]:
        """Validators ranked last in ``epoch`` on the chain through ``parent`` (a block's parent
        for a view of ``epoch``): those blamed for a view of the last ``REPUTATION_EPOCHS``
        epochs. A function of the chain's last block before ``epoch`` only, so one set holds
        for all the epoch's views on a chain and the order never shifts under ``k``. Adds the
        suspects of a timed-out last view of the previous epoch (``_boundary_suspects``)."""
        if epoch == 0:
            return frozenset()
        tail = self._anchor(parent, self.start(epoch))
        key = (epoch, tail.hash)
        cached = self._demoted.get(key)
        if cached is not None:
            return cached
        demoted = self._failures(epoch, tail) | self._boundary_suspects(epoch, tail, parent)
        if len(self._demoted) > 256:
            self._demoted.clear()
        self._demoted[key] = demoted
        return demoted

    def order(self, epoch: int, parent: TreeNode) -> tuple[int, ...]:
        """Who leads ``epoch``'s views on ``parent``'s chain, in turn: the VRF ranking with the
        demoted validators last."""
        return reputation_order(self.ranking(epoch, parent), self.demoted(epoch, parent))

    def leader(self, view: int, parent: TreeNode) -> int:
        """The validator that may propose at ``view`` on top of ``parent``."""
        assert view > parent.view
        epoch = self.epoch(view)
        k = self.tree.gaps_before(parent, view)
        order = self.order(epoch, parent)
        leader = order[k % len(order)]
        if view == parent.view + 1 and self.epoch(parent.view) == epoch and parent.proposer >= 0:
            # What ``failed_leader`` relies on: the view after a block, in its epoch, is led by
            # that block's proposer.
            assert leader == parent.proposer, (view, leader, parent.proposer)
        return leader

    # -- tickets --------------------------------------------------------------------------

    def alpha(self, epoch: int, tip: TreeNode) -> bytes:
        return ticket_alpha(self.chain_id, epoch, self.seed(epoch, tip))

    def verify_block_tickets(self, block: Block, parent: TreeNode) -> dict[int, tuple[int, bytes]]:
        """Check every ticket of ``block`` (on top of ``parent``); return validator → (epoch, β).

        Rules: ticket epoch = block epoch + 2; known validator; one ticket per validator in the
        block; the proof verifies under that validator's VRF key for this chain's seed.
        """
        if not block.tickets:
            return {}
        target = self.epoch(block.view) + TICKET_LEAD_EPOCHS
        alpha = self.alpha(target, parent)
        out: dict[int, tuple[int, bytes]] = {}
        for t in block.tickets:
            if t.epoch != target:
                raise InvalidTicket(
                    t.validator,
                    t.epoch,
                    f"block of view {block.view} carries tickets for epoch {target} only",
                )
            if not 0 <= t.validator < self.vset.n:
                raise InvalidTicket(t.validator, t.epoch, "unknown validator")
            if t.validator in out:
                raise InvalidTicket(t.validator, t.epoch, "two tickets in one block")
            beta = self.vset.verifier.vrf_output(
                self.vset.members[t.validator].vrf_key, t.proof, alpha
            )
            if beta is None:
                raise InvalidTicket(t.validator, t.epoch, "VRF proof does not verify")
            out[t.validator] = (t.epoch, beta)
        return out

    def tickets_on_chain(self, target: int, parent: TreeNode) -> set[int]:
        """Validators with a ticket for ``target`` already in ``parent``'s chain window."""
        window = target - TICKET_LEAD_EPOCHS
        if window < 0:
            return set()
        have: set[int] = set()
        for node in self._walk(parent, self.start(window)):
            have.update(v for v, (e, _) in node.tickets.items() if e == target)
        return have

    def valid_ticket(self, ticket: VrfTicket, parent: TreeNode) -> bool:
        """Does ``ticket`` verify for the seed of ``parent``'s chain? (Memoised: a leader asks
        for every pooled ticket at every proposal.)"""
        if not 0 <= ticket.validator < self.vset.n:
            return False
        alpha = self.alpha(ticket.epoch, parent)
        memo = (ticket.validator, ticket.proof, alpha)
        known = self._valid_tickets.get(memo)
        if known is None:
            key = self.vset.members[ticket.validator].vrf_key
            known = self.vset.verifier.vrf_output(key, ticket.proof, alpha) is not None
            if len(self._valid_tickets) > 4 * 256:
                self._valid_tickets.clear()
            self._valid_tickets[memo] = known
        return known
