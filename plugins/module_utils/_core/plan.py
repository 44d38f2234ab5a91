# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One planned step of a module: a name, what it will do, and how to do it."""

from __future__ import annotations


class Action:
    __slots__ = ("apply", "detail", "name")

    def __init__(self, name, detail, apply):
        self.name = name
        self.detail = detail
        self.apply = apply

    def report(self):
        return {"action": self.name, "detail": self.detail}
