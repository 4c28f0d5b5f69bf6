"""A department's name read back to its kind, for routing notices.

The classifier names the responsible department the way
:meth:`classifiers.responders.ResponderRules.department` builds it: the place
name of its government (霍山县, 天长市; a name several divisions share comes
after its parent's: 北京市朝阳区) followed by what the department is called at
that level (``config/responders.yaml`` ``names``: 住房和城乡建设厅 at a
province, the generic name elsewhere). The unassigned department is that
government's office (蜀山区人民政府办公室). An item whose place is 待定 keeps the
generic name (住房和城乡建设局).

:class:`DepartmentNames` reverses that: it strips the leading division names
(official names from the gazetteer, longest first) and maps what is left to the
generic kinds — the department keys of ``responders.yaml`` — it can stand for
(住房和城乡建设厅 is the provincial name of both 住房和城乡建设局 and 城市管理局).
A name it cannot read (a duty officer typed 市住建局) has no kind: only a
recipient listing that exact name, or one answering for every department,
gets its notices.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

from classifiers.places import GAZETTEER_TSV, Gazetteer
from classifiers.responders import ResponderRules, RespondersConfig
from yuqing.configfile import load_model

# What a government is called after its place name (classifiers.responders.government).
_GOVERNMENT_SUFFIXES = ("人民政府", "管理委员会", "行政公署", "")


class DepartmentNames:
    def __init__(self, cfg: RespondersConfig, gazetteer: Gazetteer):
        self.gazetteer = gazetteer
        self.rules = ResponderRules(cfg, gazetteer)
        self.unassigned = cfg.unassigned_department
        kinds: dict[str, set[str]] = {}
        for generic, dept in cfg.departments.items():
            kinds.setdefault(generic, set()).add(generic)
            for name in dept.names.values():
                kinds.setdefault(name, set()).add(generic)
        kinds.setdefault(self.unassigned, set()).add(self.unassigned)
        offices = {cfg.office.province, cfg.office.city, cfg.office.county}
        for suffix in _GOVERNMENT_SUFFIXES:
            for office in offices:
                kinds.setdefault(suffix + office, set()).add(self.unassigned)
        self._level: dict[str, frozenset[str]] = {k: frozenset(v) for k, v in kinds.items()}
        self.generic: tuple[str, ...] = tuple(dict.fromkeys([*cfg.departments, self.unassigned]))
        self._memo: dict[str, frozenset[str]] = {}

    # -- reading names -----------------------------------------------------------

    def level_kinds(self, name: str) -> frozenset[str]:
        """The kinds of a name without a place (住房和城乡建设厅 → 住房和城乡建设局, 城市管理局)."""
        return self._level.get(name.strip(), frozenset())

    def kinds(self, name: str | None) -> frozenset[str]:
        """The kinds of a department as the classifier names it (蜀山区住房和城乡建设局 →
        住房和城乡建设局); empty when the name is not one the rules produce."""
        if not name:
            return frozenset()
        name = name.strip()
        hit = self._memo.get(name)
        if hit is None:
            rest = name if name in self._level else self._strip(name, 0)
            hit = self._level.get(rest, frozenset()) if rest else frozenset()
            if len(self._memo) < 10000:
                self._memo[name] = hit
        return hit

    def _strip(self, name: str, depth: int) -> str | None:
        # The longest division name at the start whose remainder is a department
        # name, or strips further (北京市 + 朝阳区 + 教育局); at most three levels.
        for i in range(len(name) - 1, 1, -1):
            head, rest = name[:i], name[i:]
            if not any(d.name == head for d in self.gazetteer.lookup(head)):
                continue
            if rest in self._level:
                return rest
            if depth < 2:
                deeper = self._strip(rest, depth + 1)
                if deeper:
                    return deeper
        return None

    def name_at(self, prefix: str, generic: str) -> str:
        """What the classifier calls a department of that kind at that jurisdiction
        (``340104``, 住房和城乡建设局 → 蜀山区住房和城乡建设局); the generic name at the top level."""
        d = self.gazetteer.get(prefix) if prefix else None
        return self.rules.department(d, generic) if d is not None else generic

    def place_label(self, prefix: str) -> str:
        """``3415`` → ``3415（六安市）``; ``""`` → 最高层级（含属地待定）."""
        if not prefix:
            return "最高层级（含属地待定）"
        d = self.gazetteer.get(prefix)
        return f"{prefix}（{d.name}）" if d is not None else prefix

    # -- loading -------------------------------------------------------------------

    @classmethod
    def load(cls, config_dir: Path | str) -> DepartmentNames:
        """From ``responders.yaml`` and ``regions.yaml`` of a config dir (cached by content)."""
        d = Path(config_dir)
        key = hashlib.sha256()
        for p in (d / "responders.yaml", d / "regions.yaml", Path(GAZETTEER_TSV)):
            key.update((p.read_bytes() if p.exists() else b"") + b"\0")
        digest = key.hexdigest()
        with _cache_lock:
            hit = _cache.get(digest)
            if hit is None:
                cfg = load_model(d / "responders.yaml", RespondersConfig)
                hit = cls(cfg, Gazetteer.load(d / "regions.yaml"))
                if len(_cache) >= 4:  # a deployment has one config; tests a few
                    _cache.clear()
                _cache[digest] = hit
            return hit


_cache: dict[str, DepartmentNames] = {}
_cache_lock = threading.Lock()
