"""The ordering rules on their own: round-robin between servers, FIFO inside one, batches by style."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from mmpp.inference.queue.scheduler import FairScheduler


@dataclass(eq=False)
class Item:
    name: str
    guild: int | None
    user: int = 0
    style: str = "a"
    cost: int = 1

    @property
    def bucket(self) -> Hashable:
        return ("dm", self.user) if self.guild is None else ("guild", self.guild)

    @property
    def batch_key(self) -> Hashable:
        return self.style


def names(items: list[Item]) -> list[str]:
    return [i.name for i in items]


def run_one_at_a_time(s: FairScheduler[Item]) -> list[str]:
    order = []
    while s:
        order += names(s.pick(1))
    return order


def test_a_server_with_fifty_waiting_does_not_starve_a_server_with_one() -> None:
    s: FairScheduler[Item] = FairScheduler()
    for n in range(50):
        s.add(Item(f"big{n}", guild=1))
    s.add(Item("small", guild=2))
    assert names(list(s.order()))[:3] == ["big0", "small", "big1"]
    order = run_one_at_a_time(s)
    assert order[1] == "small"
    # Inside one server it is first come, first served.
    assert [x for x in order if x != "small"] == [f"big{n}" for n in range(50)]


def test_servers_take_turns_and_a_newcomer_joins_the_back_of_the_rotation() -> None:
    s: FairScheduler[Item] = FairScheduler()
    for n in range(3):
        s.add(Item(f"a{n}", guild=1))
    for n in range(2):
        s.add(Item(f"b{n}", guild=2))
    assert names(s.pick(1)) == ["a0"]
    s.add(Item("c0", guild=3))
    assert run_one_at_a_time(s) == ["b0", "a1", "c0", "b1", "a2"]


def test_each_dm_member_is_their_own_bucket() -> None:
    s: FairScheduler[Item] = FairScheduler()
    for n in range(3):
        s.add(Item(f"g{n}", guild=1))
    s.add(Item("dm1", guild=None, user=11))
    s.add(Item("dm2", guild=None, user=12))
    assert run_one_at_a_time(s) == ["g0", "dm1", "dm2", "g1", "g2"]


def test_batch_takes_same_style_jobs_up_to_the_limit_and_never_mixes_styles() -> None:
    s: FairScheduler[Item] = FairScheduler()
    for name, style in [("a1", "a"), ("b1", "b"), ("a2", "a"), ("a3", "a"), ("a4", "a"), ("b2", "b")]:
        s.add(Item(name, guild=1, style=style))
    assert names(s.pick(3)) == ["a1", "a2", "a3"]
    assert names(s.pick(3)) == ["b1", "b2"]
    assert names(s.pick(3)) == ["a4"]
    assert s.pick(3) == []


def test_batch_mates_come_from_other_servers_in_fair_order_and_their_servers_go_to_the_back() -> None:
    s: FairScheduler[Item] = FairScheduler()
    s.add(Item("x1", guild=1))
    s.add(Item("x2", guild=1))
    s.add(Item("y1", guild=2, style="b"))
    s.add(Item("z1", guild=3))
    assert names(s.pick(2)) == ["x1", "z1"]
    # Server 2 was skipped only because its style differs; it is next, ahead of the served ones.
    assert names(s.pick(2)) == ["y1"]
    assert names(s.pick(2)) == ["x2"]


def test_removing_a_waiting_job_closes_the_gap() -> None:
    s: FairScheduler[Item] = FairScheduler()
    items = [Item(f"a{n}", guild=1) for n in range(3)]
    for item in items:
        s.add(item)
    assert s.remove(items[1]) is True
    assert s.remove(items[1]) is False
    assert names(list(s.order())) == ["a0", "a2"]
    assert len(s) == 2
    assert names(s.drain()) == ["a0", "a2"]
    assert not s


def test_a_set_takes_its_pictures_from_a_batch_and_is_split_by_nobody_else() -> None:
    s: FairScheduler[Item] = FairScheduler()
    s.add(Item("set2", guild=1, cost=2))
    s.add(Item("one", guild=2))
    s.add(Item("set2b", guild=3, cost=2))
    # Four pictures fit: the set of two and the single; the next set of two would make five.
    assert names(s.pick(4)) == ["set2", "one"]
    # A set larger than the batch still goes whole, as one place (the worker splits the drawing).
    s.add(Item("set4", guild=4, cost=4))
    assert names(s.pick(2)) == ["set2b"]
    assert names(s.pick(2)) == ["set4"]


def test_a_server_served_a_set_while_others_waited_sits_out_until_they_had_as_many_pictures() -> None:
    s: FairScheduler[Item] = FairScheduler()
    s.add(Item("a-set", guild=1, cost=4))
    s.add(Item("a-next", guild=1, cost=4))
    for n in range(4):
        s.add(Item(f"b{n}", guild=2))
    assert names(s.pick(1)) == ["a-set"]
    # Server 1 took four pictures at once: server 2 gets three more turns before server 1's next set.
    assert names(list(s.order()))[:4] == ["b0", "b1", "b2", "a-next"]
    assert run_one_at_a_time(s) == ["b0", "b1", "b2", "a-next", "b3"]


def test_a_set_drawn_while_nobody_else_waited_owes_nothing() -> None:
    s: FairScheduler[Item] = FairScheduler()
    s.add(Item("a-set", guild=1, cost=4))
    assert names(s.pick(1)) == ["a-set"]
    s.add(Item("a-next", guild=1, cost=4))
    s.add(Item("b0", guild=2))
    assert run_one_at_a_time(s) == ["a-next", "b0"]
