"""A seeded synthetic company: a CEO → heads → team managers → account managers hierarchy and its client book.

Pure (no database, no FastAPI) so that tests, the demo and the benchmarks share one realistic data set. The rows
are plain dicts in exactly the shape of `EmployeeBatchItem` / `ClientBatchItem`, so they validate with those
models and are written by `directory.service.upsert_employees` / `upsert_clients`.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from app.book.schemas import RecordBatchItem
from app.core import bulk
from app.directory.schemas import ClientBatchItem, EmployeeBatchItem

T = TypeVar("T")
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

INDUSTRIES = (
    "banking",
    "insurance",
    "retail",
    "manufacturing",
    "healthcare",
    "energy",
    "logistics",
    "software",
    "telecom",
    "public_sector",
)
REGIONS = ("cn-north", "cn-east", "cn-south", "apac", "emea", "americas")
LANGUAGES = ("zh", "en", "ja", "de", "fr")
TIERS = ("strategic", "key", "standard", "prospect")
LOAD_POINTS = {"strategic": 5.0, "key": 3.0, "standard": 1.0, "prospect": 0.5}
MIN_SENIORITY = {"strategic": 3, "key": 2, "standard": 1, "prospect": 1}

_REGION_WEIGHTS = (0.20, 0.25, 0.20, 0.15, 0.12, 0.08)  # where the teams sit: mostly Greater China
_SENIORITY_CUM = list(accumulate((0.25, 0.40, 0.25, 0.10)))
_VALUE_RANGE = {  # annual value, log-uniform within the tier's range
    "strategic": (2_000_000.0, 30_000_000.0),
    "key": (300_000.0, 3_000_000.0),
    "standard": (20_000.0, 400_000.0),
    "prospect": (1_000.0, 60_000.0),
}
_RELATIONSHIP_DAYS = {"strategic": (365, 4000), "key": (180, 3500), "standard": (30, 3000), "prospect": (0, 400)}
_CONTACT_MEAN_DAYS = {"strategic": 6.0, "key": 12.0, "standard": 30.0, "prospect": 60.0}
_OPEN_ISSUES_MEAN = {"strategic": 3.0, "key": 1.5, "standard": 0.5, "prospect": 0.1}
_TEAM_PROBABILITY = {"strategic": 0.9, "key": 0.5, "standard": 0.15, "prospect": 0.05}
_CHANNELS = ("email", "phone", "webhook", "none")
_TEAM_ROLES = (
    "deputy account manager",
    "solutions engineer",
    "service manager",
    "technical account manager",
    "finance partner",
)
_NEIGHBOURS = {
    "cn-north": ("cn-east",),
    "cn-east": ("cn-north", "cn-south"),
    "cn-south": ("cn-east", "apac"),
    "apac": ("cn-south", "americas"),
    "emea": ("americas", "apac"),
    "americas": ("emea",),
}
_REGION_NAMES = {
    "cn-north": "North China",
    "cn-east": "East China",
    "cn-south": "South China",
    "apac": "Asia-Pacific",
    "emea": "EMEA",
    "americas": "Americas",
}
_AM_TITLES = {
    1: "Associate Account Manager",
    2: "Account Manager",
    3: "Senior Account Manager",
    4: "Principal Account Manager",
}

# ---- names ------------------------------------------------------------------------------------

_ZH_SURNAMES = (
    ("王", "wang"), ("李", "li"), ("张", "zhang"), ("刘", "liu"), ("陈", "chen"), ("杨", "yang"), ("黄", "huang"),
    ("赵", "zhao"), ("吴", "wu"), ("周", "zhou"), ("徐", "xu"), ("孙", "sun"), ("马", "ma"), ("朱", "zhu"),
    ("胡", "hu"), ("郭", "guo"), ("何", "he"), ("林", "lin"), ("高", "gao"), ("罗", "luo"), ("郑", "zheng"),
    ("梁", "liang"), ("谢", "xie"), ("宋", "song"), ("唐", "tang"), ("韩", "han"), ("冯", "feng"), ("邓", "deng"),
)  # fmt: skip
_ZH_GIVEN = (
    ("伟", "wei"), ("芳", "fang"), ("娜", "na"), ("敏", "min"), ("静", "jing"), ("丽", "li"), ("强", "qiang"),
    ("磊", "lei"), ("军", "jun"), ("洋", "yang"), ("勇", "yong"), ("艳", "yan"), ("杰", "jie"), ("涛", "tao"),
    ("明", "ming"), ("超", "chao"), ("霞", "xia"), ("平", "ping"), ("刚", "gang"), ("婷", "ting"), ("晨", "chen"),
    ("宇航", "yuhang"), ("子涵", "zihan"), ("欣怡", "xinyi"), ("浩然", "haoran"), ("梓萱", "zixuan"),
    ("思远", "siyuan"), ("雨桐", "yutong"), ("建国", "jianguo"), ("文博", "wenbo"), ("佳琪", "jiaqi"),
)  # fmt: skip
_EN_FIRST = (
    "Olivia", "Liam", "Emma", "Noah", "Ava", "James", "Sophia", "Lucas", "Mia", "Ethan", "Amelia", "Oliver",
    "Harper", "Daniel", "Chloe", "Samuel", "Grace", "Henry", "Lena", "Jonas", "Claire", "Hugo", "Yuki", "Kenji",
    "Priya", "Arjun", "Sofia", "Mateo", "Hannah", "Felix", "Nora", "Leo",
)  # fmt: skip
_EN_LAST = (
    "Smith", "Johnson", "Brown", "Taylor", "Wilson", "Davies", "Evans", "Thomas", "Roberts", "Walker", "Wright",
    "Müller", "Schmidt", "Fischer", "Martin", "Bernard", "Dubois", "Laurent", "Tanaka", "Suzuki", "Sato",
    "Garcia", "Silva", "Nguyen", "Patel", "Kumar", "Clarke", "Hughes", "Baker", "Moreau",
)  # fmt: skip

_ZH_PLACES = {
    "cn-north": ("华北", "北京", "天津", "青岛", "大连", "济南", "石家庄", "沈阳", "太原", "烟台", "唐山", "哈尔滨"),
    "cn-east": ("华东", "上海", "杭州", "苏州", "南京", "宁波", "无锡", "合肥", "常州", "温州", "绍兴", "南通"),
    "cn-south": ("华南", "广州", "深圳", "厦门", "东莞", "佛山", "珠海", "南宁", "福州", "中山", "惠州", "海口"),
    "other": ("香港", "新加坡", "澳门", "台北", "吉隆坡"),
}
_ZH_WORDS = (
    "精密", "鑫达", "恒通", "华信", "中联", "远航", "宏图", "天成", "瑞丰", "金桥", "博远", "新元", "海纳", "卓越",
    "启明", "永泰", "众诚", "嘉禾", "盛世", "华腾", "蓝海", "祥和", "东方", "长城", "万象", "正泰", "星河", "云帆",
    "君安", "德胜", "和信", "润泽", "兴业", "广源", "安达", "融通", "汇通", "创维", "领航", "锦程", "恒瑞", "天工",
    "华联", "中科", "国信", "宏达", "瑞祥", "鼎盛", "晨光", "金鼎", "海川", "百川", "合众", "东升", "新纪元", "九州",
    "万通", "联创", "明德", "智远", "华美", "泰和", "宝通", "立信", "信达", "昌盛", "中天", "恒信", "三友", "新华",
    "奥维", "金石", "博雅", "明珠", "凯旋", "华创", "京华", "长江",
)  # fmt: skip
_ZH_INDUSTRY = {
    "banking": ("金融服务", "投资", "融资租赁", "资本管理"),
    "insurance": ("保险", "财产保险", "人寿保险", "保险经纪"),
    "retail": ("商贸", "百货", "零售", "电子商务"),
    "manufacturing": ("制造", "机械", "精密制造", "电子", "汽车零部件"),
    "healthcare": ("医疗", "医药", "健康科技", "生物科技"),
    "energy": ("能源", "新能源", "电力", "燃气"),
    "logistics": ("物流", "供应链", "航运", "快运"),
    "software": ("软件", "信息技术", "数据科技", "云计算"),
    "telecom": ("通信", "网络科技", "通讯设备", "移动互联"),
    "public_sector": ("城市建设", "交通投资", "公共资源", "智慧城市", "水务", "港务"),
}
_ZH_TYPES = ("有限公司", "股份有限公司", "集团有限公司", "科技有限公司", "发展有限公司")

_EN_HEADS = ("North", "Blue", "Silver", "Red", "Green", "Iron", "Bright", "Clear", "Stone", "Oak", "Sun", "Star",
             "High", "Lake", "River", "West", "East", "Gold", "Swift", "Maple")  # fmt: skip
_EN_TAILS = ("wind", "peak", "field", "bridge", "gate", "point", "stone", "way", "crest", "harbor", "wood", "line",
             "view", "path", "ford", "light", "mark", "spring", "vale", "haven")  # fmt: skip
_EN_SINGLE = ("Helix", "Vertex", "Quantum", "Atlas", "Orion", "Summit", "Pioneer", "Apex", "Nimbus", "Zenith",
              "Vector", "Keystone", "Meridian", "Beacon", "Horizon", "Cobalt", "Granite", "Aurora")  # fmt: skip
_EN_INDUSTRY = {
    "banking": ("Bank", "Capital", "Financial", "Trust"),
    "insurance": ("Insurance", "Assurance", "Mutual", "Underwriters"),
    "retail": ("Retail", "Stores", "Outfitters", "Markets"),
    "manufacturing": ("Manufacturing", "Precision", "Industries", "Components", "Machinery"),
    "healthcare": ("Health", "Medical", "Pharma", "Life Sciences"),
    "energy": ("Energy", "Power", "Renewables", "Utilities"),
    "logistics": ("Logistics", "Freight", "Shipping", "Supply Chain"),
    "software": ("Software", "Systems", "Labs", "Analytics"),
    "telecom": ("Telecom", "Networks", "Communications", "Mobile"),
    "public_sector": ("Transit", "Water", "Digital", "Port", "Housing", "Roads", "Energy", "Parks"),
}
_EN_PUBLIC = ("Authority", "Agency", "Council", "Board", "Commission", "Trust")
_EN_SUFFIXES = {
    "en": ("Ltd", "Inc.", "Group", "plc", "LLC", "Holdings", "Corp."),
    "de": ("GmbH", "AG"),
    "fr": ("SA", "SAS"),
    "ja": ("K.K.", "Co., Ltd."),
}


# ---- the company ------------------------------------------------------------------------------


@dataclass
class Company:
    """Rows ready for the directory batch endpoints, plus the account managers chosen to leave."""

    employees: list[dict[str, Any]]
    clients: list[dict[str, Any]]
    leavers: list[str]
    now: dt.datetime
    seed: int
    stats: dict[str, float] = field(default_factory=dict)

    def employee_items(self) -> list[EmployeeBatchItem]:
        """Validated models (what the directory service writes); costs a pydantic pass over every row."""
        return [EmployeeBatchItem.model_validate(row) for row in self.employees]

    def client_items(self) -> list[ClientBatchItem]:
        return [ClientBatchItem.model_validate(row) for row in self.clients]

    def record_rows(self) -> list[dict[str, Any]]:
        """The book beside the clients (issue 16): per client that is not churned, one or two deals (one in four
        already won, so closed), a task and an invoice (one in three overdue, one in four paid), owned by the client's
        owner. Drawn from the seed and the client's id alone, so the clients and employees stay as they were."""
        rows: list[dict[str, Any]] = []
        stages = ("qualified", "proposal", "negotiation")
        for c in self.clients:
            if c["status"] == "churned":
                continue
            cid, owner = c["external_id"], c["owner"]
            rng = random.Random(f"{self.seed}:{cid}")  # noqa: S311 - synthetic data, not secrets
            value = float(c.get("annual_value") or 10_000)
            currency = "CNY" if c.get("region", "").startswith("cn") else "EUR"
            rec = _record_maker(cid, owner)

            for n in range(1 + (rng.random() < 0.5)):
                won = rng.random() < 0.25
                amount = round(value * rng.uniform(0.1, 0.6), 2)
                rows.append(
                    rec(
                        "deal",
                        n,
                        f"{c['name']} — opportunity {n + 1}",
                        amount=amount,
                        currency=currency,
                        status="closed" if won else "open",
                        stage="won" if won else rng.choice(stages),
                        due_at=self.now + dt.timedelta(days=rng.randint(10, 120)),
                    )
                )
            rows.append(rec("task", 0, "Follow up on the last meeting", due_at=self.now + dt.timedelta(days=7)))
            draw = rng.random()
            paid, overdue = draw < 0.25, draw > 2 / 3
            rows.append(
                rec(
                    "invoice",
                    0,
                    f"Invoice {cid}",
                    amount=round(value / 12, 2),
                    currency=currency,
                    status="closed" if paid else "open",
                    stage="paid" if paid else None,
                    due_at=self.now + dt.timedelta(days=-rng.randint(5, 60) if overdue else rng.randint(5, 30)),
                )
            )
        return rows

    def record_items(self) -> list[RecordBatchItem]:
        return [RecordBatchItem.model_validate(row) for row in self.record_rows()]

    def owner_counts(self) -> Counter[str]:
        return Counter(c["owner"] for c in self.clients)

    def loads(self) -> dict[str, float]:
        """Load points per owner, as the service counts them (churned clients excluded)."""
        out: dict[str, float] = {}
        for c in self.clients:
            if c["status"] != "churned":
                out[c["owner"]] = out.get(c["owner"], 0.0) + LOAD_POINTS[c["tier"]]
        return out


def _record_maker(cid: str, owner: str) -> Any:
    def rec(kind: str, n: int, title: str, **extra: Any) -> dict[str, Any]:
        row = {"kind": kind, "external_id": f"{kind[0]}-{cid}-{n}", "title": title, "owner": owner}
        return row | {"client": cid, "status": "open"} | extra

    return rec


def jsonable(row: dict[str, Any]) -> dict[str, Any]:
    """A row as an HTTP client sends it: dates and times in ISO 8601."""
    return {k: v.isoformat() if isinstance(v, dt.date) else v for k, v in row.items()}


def chunks(rows: Sequence[T], size: int = 1000) -> Iterator[Sequence[T]]:
    """Batches no larger than the directory's batch limit."""
    return bulk.chunks(rows, size)


@dataclass
class _Team:
    manager: str
    region: str
    industries: tuple[str, ...]
    members: list[int] = field(default_factory=list)  # indexes into the account-manager list


@dataclass
class _AccountManager:
    row: dict[str, Any]
    team: int
    book: bool = False


class _Names:
    """Name generators with a seen-set, so names rarely repeat even at 100k clients."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.seen: set[str] = set()
        self.emails: Counter[str] = Counter()

    def person(self, chinese: bool) -> tuple[str, str]:
        """A name and an ASCII e-mail local part (pinyin for Chinese names)."""
        r = self.rng
        if chinese:
            sur, sur_py = r.choice(_ZH_SURNAMES)
            given, given_py = r.choice(_ZH_GIVEN)
            return sur + given, f"{given_py}.{sur_py}"
        first, last = r.choice(_EN_FIRST), r.choice(_EN_LAST)
        return f"{first} {last}", _ascii_local(first, last)

    def unique_email(self, local: str, domain: str) -> str:
        self.emails[local] += 1
        n = self.emails[local]
        return f"{local}{n if n > 1 else ''}@{domain}"

    def client(self, industry: str, region: str, language: str, u: Sequence[float]) -> str:
        """The first try uses the caller's uniforms (drawn in bulk); retries after a clash use the seeded rng."""
        name = self._zh_client(industry, region, u) if language == "zh-CN" else self._en_client(industry, language, u)
        tries = 0
        while name in self.seen and tries < 5:
            tries += 1
            u = [self.rng.random() for _ in range(5)]
            name = (
                self._zh_client(industry, region, u) if language == "zh-CN" else self._en_client(industry, language, u)
            )
        if name in self.seen:
            base, n = name, 2
            while f"{base} ({n})" in self.seen:
                n += 1
            name = f"{base} ({n})"
        self.seen.add(name)
        return name

    @staticmethod
    def _zh_client(industry: str, region: str, u: Sequence[float]) -> str:
        place = _one(_ZH_PLACES.get(region, _ZH_PLACES["other"]), u[0])
        return place + _one(_ZH_WORDS, u[1]) + _one(_ZH_INDUSTRY[industry], u[2]) + _one(_ZH_TYPES, u[3])

    @staticmethod
    def _en_client(industry: str, language: str, u: Sequence[float]) -> str:
        if u[0] < 0.25:
            head = _one(_EN_SINGLE, u[1])
        else:
            pair = int(u[1] * len(_EN_HEADS) * len(_EN_TAILS))
            head = _EN_HEADS[pair // len(_EN_TAILS)] + _EN_TAILS[pair % len(_EN_TAILS)]
        noun = _one(_EN_INDUSTRY[industry], u[2])
        if industry == "public_sector":
            return f"{head} {noun} {_one(_EN_PUBLIC, u[3])}"
        return f"{head} {noun} {_one(_EN_SUFFIXES.get(language, _EN_SUFFIXES['en']), u[3])}"


def _one(values: Sequence[T], u: float) -> T:
    """A uniform draw from a uniform number in [0, 1) already drawn."""
    return values[int(u * len(values))]


def _ascii_local(first: str, last: str) -> str:
    return f"{first}.{last}".lower().replace("ü", "ue")


def _pick(rng: random.Random, values: Sequence[T], cum: Sequence[float]) -> T:
    return values[bisect.bisect(cum, rng.random() * cum[-1])]


def _half_up(x: float) -> float:
    """Capacities in half points, like the smallest tier load."""
    return math.ceil(x * 2 - 1e-9) / 2


def generate(
    seed: int = 7,
    employees: int = 60,
    clients: int = 3000,
    leavers: int = 1,
    teams: int | None = None,
    owner_skew: bool = True,
    *,
    now: dt.datetime | None = None,
    headroom: float = 1.3,
) -> Company:
    """Deterministic for (seed, sizes, now); dates are relative to `now` (default: today, 00:00 UTC)."""
    if now is None:
        now = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    now = now.astimezone(dt.UTC)
    if employees < 4:
        raise ValueError("a company needs at least 4 employees (CEO, head, manager, account manager)")
    n_teams = teams if teams is not None else max(1, round((employees - 1) / 10))
    n_heads = max(1, min(n_teams, round(math.sqrt(n_teams))))
    n_am = employees - 1 - n_heads - n_teams
    if n_teams < 1 or n_am < 1:
        raise ValueError(f"{employees} employees cannot staff {n_teams} teams with account managers")
    if leavers < 0 or (clients > 0 and leavers > n_am) or (clients == 0 and leavers > 0):
        raise ValueError(f"cannot choose {leavers} leavers among {n_am} account managers")

    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not secrets
    names = _Names(rng)
    width = max(5, len(str(employees)))
    ids = iter(f"emp-{i:0{width}d}" for i in range(1, employees + 1))

    def person(chinese: bool) -> tuple[str, str]:
        name, local = names.person(chinese)
        return name, names.unique_email(local, "example.com")

    def employee(title: str, seniority: int, manager: str | None, **extra: Any) -> dict[str, Any]:
        chinese = extra.pop("chinese")
        name, email = person(chinese)
        return {
            "external_id": next(ids),
            "name": name,
            "email": email,
            "title": title,
            "seniority": seniority,
            "manager": manager,
            "status": "active",
            "exit_at": None,
            **extra,
        }

    # Leadership: a CEO, heads of sales over contiguous blocks of teams (sorted by region).
    ceo = employee(
        "Chief Executive Officer", 4, None, chinese=True, skills=[], regions=list(REGIONS), languages=["zh", "en"],
        clearance=3, capacity=0.0,
    )  # fmt: skip
    team_regions = sorted(
        (_pick(rng, REGIONS, list(accumulate(_REGION_WEIGHTS))) for _ in range(n_teams)), key=REGIONS.index
    )
    blocks = [team_regions[h * n_teams // n_heads : (h + 1) * n_teams // n_heads] for h in range(n_heads)]
    rows: list[dict[str, Any]] = [ceo]
    team_list: list[_Team] = []
    for block in blocks:
        covered = list(dict.fromkeys(block))
        head = employee(
            "Head of Sales, " + " & ".join(_REGION_NAMES[r] for r in covered), 4, ceo["external_id"],
            chinese=covered[0].startswith("cn-"), skills=[], regions=covered, languages=_languages(rng, covered[0]),
            clearance=3, capacity=0.0,
        )  # fmt: skip
        rows.append(head)
        for region in block:
            focus = tuple(sorted(rng.sample(INDUSTRIES, 2), key=INDUSTRIES.index))
            manager = employee(
                f"Sales Manager, {_REGION_NAMES[region]} ({focus[0].replace('_', ' ')})", rng.choice((3, 4)),
                head["external_id"], chinese=_chinese_staff(rng, region), skills=list(focus), regions=[region],
                languages=_languages(rng, region), clearance=3, capacity=0.0,
            )  # fmt: skip
            rows.append(manager)
            team_list.append(_Team(manager["external_id"], region, focus))

    # Account managers: every team gets one, the rest spread unevenly.
    team_weights = list(accumulate(rng.uniform(0.6, 1.4) for _ in team_list))
    ams: list[_AccountManager] = []
    for i in range(n_am):
        t = i if i < len(team_list) else bisect.bisect(team_weights, rng.random() * team_weights[-1])
        team = team_list[t]
        seniority = _pick(rng, (1, 2, 3, 4), _SENIORITY_CUM)
        clearance = min(3, max(1, seniority - 1 + (rng.random() < 0.5)))
        extra_skills = rng.sample(INDUSTRIES, rng.choice((0, 1, 1, 2)))
        regions = [team.region] + ([rng.choice(_NEIGHBOURS[team.region])] if rng.random() < 0.3 else [])
        row = employee(
            _AM_TITLES[seniority], seniority, team.manager, chinese=_chinese_staff(rng, team.region),
            skills=sorted(set(team.industries) | set(extra_skills), key=INDUSTRIES.index), regions=regions,
            languages=_languages(rng, team.region), clearance=clearance, capacity=0.0,
        )  # fmt: skip
        team.members.append(len(ams))
        ams.append(_AccountManager(row, t))
    # Someone must be able to own a restricted strategic client.
    if not any(a.row["seniority"] >= 3 and a.row["clearance"] == 3 for a in ams):
        first = ams[0].row
        first.update(seniority=3, clearance=3, title=_AM_TITLES[3])

    # Owner weights: log-normal spread; with skew a few high-volume desks hold ~1.3–2.2 % of the
    # standard/prospect book each (1,000+ clients at 100k scale), not the strategic accounts.
    base = [rng.lognormvariate(0.0, 0.5) for _ in ams]
    volume = list(base)
    if owner_skew and n_am >= 3:
        k = max(1, round(n_am / 500))
        desks = rng.sample(range(n_am), k)
        total = sum(base)
        for i in desks:
            share = min(rng.uniform(0.013, 0.022) if n_am > 200 else 4.0 / n_am, 0.5 / k)
            volume[i] = share * total / (1 - k * share)
            ams[i].book = True
            ams[i].row["seniority"] = max(2, ams[i].row["seniority"])
            ams[i].row["title"] = _AM_TITLES[ams[i].row["seniority"]]

    # Eligible owners per (tier, sensitivity): cumulative weights for a vectorised bisect.
    pools: dict[tuple[int, int], tuple[IntArray, FloatArray]] = {}
    for t, tier in enumerate(TIERS):
        weights = volume if tier in ("standard", "prospect") else base
        for sens in (1, 2, 3):
            members = [
                i for i, a in enumerate(ams)
                if a.row["seniority"] >= MIN_SENIORITY[tier] and a.row["clearance"] >= sens
            ]  # fmt: skip
            if members:
                cum = np.cumsum(np.array([weights[i] for i in members], dtype=np.float64))
                pools[t, sens] = (np.array(members, dtype=np.int64), cum)

    client_rows = _clients(rng, names, clients, ams, team_list, pools, now)

    # Capacity fits the portfolio: ~15 % are full, the rest have room, the total is `headroom` × load.
    loads: dict[str, float] = {}
    for c in client_rows:
        loads[c["owner"]] = loads.get(c["owner"], 0.0) + LOAD_POINTS[c["tier"]]
    total_load = sum(loads.values())
    fixed = 0.0
    flexible: list[tuple[dict[str, Any], float, float]] = []
    for team_ in team_list:  # managers keep a little room for escalations
        row = next(r for r in rows if r["external_id"] == team_.manager)
        row["capacity"] = _half_up(rng.uniform(8.0, 20.0))
        fixed += row["capacity"]
    for a in ams:
        load = loads.get(a.row["external_id"], 0.0)
        if load == 0:
            a.row["capacity"] = _half_up(rng.uniform(10.0, 30.0))
            fixed += a.row["capacity"]
        elif rng.random() < 0.15 and not a.book:
            a.row["capacity"] = _half_up(load)
            fixed += a.row["capacity"]
        else:
            factor = rng.uniform(1.15, 1.6)
            flexible.append((a.row, load, factor))
    spread = sum(load * f for _, load, f in flexible)
    scale = (headroom * total_load - fixed) / spread if spread else 1.0
    for row, load, f in flexible:
        row["capacity"] = min(10_000.0, _half_up(max(load, load * f * scale)))

    employee_rows = rows + [a.row for a in ams]
    owners = sorted({c["owner"] for c in client_rows})
    owning = set(owners)
    candidates = [a.row["external_id"] for a in ams if a.row["external_id"] in owning]
    chosen = sorted(rng.sample(candidates, leavers)) if leavers else []
    total_capacity = sum(float(r["capacity"]) for r in employee_rows)
    return Company(
        employees=employee_rows,
        clients=client_rows,
        leavers=chosen,
        now=now,
        seed=seed,
        stats={
            "teams": float(n_teams),
            "heads": float(n_heads),
            "account_managers": float(n_am),
            "total_load": total_load,
            "total_capacity": total_capacity,
        },
    )


def _chinese_staff(rng: random.Random, region: str) -> bool:
    return region.startswith("cn-") or (region == "apac" and rng.random() < 0.4)


def _languages(rng: random.Random, region: str) -> list[str]:
    if region.startswith("cn-"):
        return ["zh", "en"] if rng.random() < 0.6 else ["zh"]
    langs = ["en"]
    if region == "apac":
        langs += [x for x, p in (("ja", 0.4), ("zh", 0.4)) if rng.random() < p]
    elif region == "emea":
        langs += [x for x, p in (("de", 0.4), ("fr", 0.3)) if rng.random() < p]
    elif rng.random() < 0.1:
        langs.append("fr")
    return langs


def _cum(table: Sequence[Sequence[float]]) -> FloatArray:
    return np.cumsum(np.array(table, dtype=np.float64), axis=1)


def _draw(u: FloatArray, cum_rows: FloatArray) -> IntArray:
    """Row-wise categorical draw: the index of the first cumulative weight above u."""
    below: npt.NDArray[np.bool_] = u[:, None] * cum_rows[:, -1:] >= cum_rows
    out: IntArray = np.minimum(below.sum(axis=1, dtype=np.int64), cum_rows.shape[1] - 1)
    return out


# Client language per team region (columns follow _CLIENT_LANGUAGES).
_CLIENT_LANGUAGES = ("zh-CN", "en", "ja", "de", "fr")
_LANGUAGE_BY_REGION = _cum(
    [
        (0.9, 0.1, 0.0, 0.0, 0.0),  # cn-north
        (0.9, 0.1, 0.0, 0.0, 0.0),  # cn-east
        (0.9, 0.1, 0.0, 0.0, 0.0),  # cn-south
        (0.25, 0.5, 0.25, 0.0, 0.0),  # apac
        (0.0, 0.5, 0.0, 0.3, 0.2),  # emea
        (0.0, 0.9, 0.0, 0.0, 0.1),  # americas
    ]
)
_SENSITIVITY_BY_TIER = _cum([(0.15, 0.45, 0.40), (0.45, 0.40, 0.15), (0.75, 0.20, 0.05), (0.90, 0.09, 0.01)])
_TIER_TABLE = _cum([(0.03, 0.12, 0.55, 0.30)])
_CHANNEL_TABLE = _cum([(0.70, 0.20, 0.05, 0.05)])


def _tier_vector(values: dict[str, Any]) -> FloatArray:
    return np.array([values[t] for t in TIERS], dtype=np.float64)


def _clients(
    rng: random.Random,
    names: _Names,
    n: int,
    ams: list[_AccountManager],
    teams: list[_Team],
    pools: dict[tuple[int, int], tuple[IntArray, FloatArray]],
    now: dt.datetime,
) -> list[dict[str, Any]]:
    """Every random number is drawn at once with numpy (seeded from `rng`); the loop only assembles rows."""
    g = np.random.default_rng(rng.getrandbits(64))
    if n == 0:
        return []
    tier = _draw(g.random(n), np.repeat(_TIER_TABLE, n, axis=0))
    sens = 1 + _draw(g.random(n), _SENSITIVITY_BY_TIER[tier])
    owner = np.zeros(n, dtype=np.int64)
    pick = g.random(n)
    for t in range(len(TIERS)):
        for s in (1, 2, 3):
            mask = (tier == t) & (sens == s)
            if not mask.any():
                continue
            level = s
            while (t, level) not in pools:
                level -= 1  # tiny companies only: nobody cleared that high
            sens[mask] = level
            members, cum = pools[t, level]
            idx = np.searchsorted(cum, pick[mask] * cum[-1], side="right")
            owner[mask] = members[np.minimum(idx, len(members) - 1)]
    # Mostly the owner's team region and one of the owner's industries.
    am_region = np.array([REGIONS.index(teams[a.team].region) for a in ams], dtype=np.int64)
    region = np.where(g.random(n) < 0.85, am_region[owner], g.integers(0, len(REGIONS), n))
    language = _draw(g.random(n), _LANGUAGE_BY_REGION[region])
    width_skills = max(1, max(len(a.row["skills"]) for a in ams))
    skill_table = np.zeros((len(ams), width_skills), dtype=np.int64)
    skill_count = np.zeros(len(ams), dtype=np.int64)
    for i, a in enumerate(ams):
        skill_count[i] = len(a.row["skills"])
        skill_table[i, : skill_count[i]] = [INDUSTRIES.index(x) for x in a.row["skills"]]
    slot = np.floor(g.random(n) * skill_count[owner]).astype(np.int64)
    own_industry = (g.random(n) < 0.8) & (skill_count[owner] > 0)
    industry = np.where(own_industry, skill_table[owner, np.minimum(slot, width_skills - 1)], g.integers(0, 10, n))
    lo = np.log(_tier_vector({t: v[0] for t, v in _VALUE_RANGE.items()}))
    hi = np.log(_tier_vector({t: v[1] for t, v in _VALUE_RANGE.items()}))
    value = np.round(np.exp(lo[tier] + g.random(n) * (hi[tier] - lo[tier])), -2)
    d_lo = _tier_vector({t: v[0] for t, v in _RELATIONSHIP_DAYS.items()})[tier]
    d_hi = _tier_vector({t: v[1] for t, v in _RELATIONSHIP_DAYS.items()})[tier]
    since_days = (d_lo + np.floor(g.random(n) * (d_hi - d_lo + 1))).astype(np.int64)
    prospect = tier == TIERS.index("prospect")
    strategic = tier == TIERS.index("strategic")
    satisfaction = np.round(np.clip(g.normal(7.4, 1.4, n), 0.0, 10.0), 1)
    no_satisfaction = prospect & (g.random(n) < 0.6)
    renewal_days = g.integers(-20, 381, n)
    no_renewal = prospect & (g.random(n) < 0.8)
    contact_seconds = (np.minimum(720.0, g.exponential(_tier_vector(_CONTACT_MEAN_DAYS)[tier])) * 86_400).astype(int)
    open_issues = g.poisson(_tier_vector(_OPEN_ISSUES_MEAN)[tier])
    at_risk = (~no_satisfaction & (satisfaction < 5.0) & (g.random(n) < 0.6)) | (g.random(n) < 0.03)
    inactive = ~at_risk & (g.random(n) < np.where(prospect, 0.06, 0.01))
    status = np.where(at_risk, 1, np.where(inactive, 2, 0))
    name_u = [g.random(n) for _ in range(4)]
    # Contacts: one flat array per attribute; client i owns [offset[i], offset[i] + n_contacts[i]).
    zh_contacts = (language == 0) & (g.random(n) < 0.85)
    n_contacts = 1 + (g.random(n) < 0.5) + (g.random(n) < 0.3) + strategic
    total = int(n_contacts.sum())
    offset = np.concatenate(([0], np.cumsum(n_contacts)))
    channel = _draw(g.random(total), np.repeat(_CHANNEL_TABLE, total, axis=0))
    keep_email = (channel != 1) | (g.random(total) < 0.5)
    keep_phone = (channel == 1) | (g.random(total) < 0.6)
    surname, given = g.integers(0, len(_ZH_SURNAMES), total), g.integers(0, len(_ZH_GIVEN), total)
    first, last = g.integers(0, len(_EN_FIRST), total), g.integers(0, len(_EN_LAST), total)
    phone_a, phone_b, phone_c = g.integers(30, 100, total), g.integers(0, 10_000, total), g.integers(0, 10_000, total)
    # Account teams on some clients: a team mate (usually) or anyone, and for strategic ones the manager.
    has_team = g.random(n) < _tier_vector(_TEAM_PROBABILITY)[tier]
    team_size = 1 + (strategic & (g.random(n) < 0.6)) + (strategic & (g.random(n) < 0.2))
    sponsor = strategic & (g.random(n) < 0.5)
    team_u = g.random((n, 3, 2))
    team_role = g.integers(0, len(_TEAM_ROLES), (n, 3))
    am_ids = [a.row["external_id"] for a in ams]
    account_teams: dict[int, list[dict[str, str]]] = {}
    for i in np.flatnonzero(has_team).tolist():
        o = int(owner[i])
        taken = {o}
        mates = teams[ams[o].team].members
        members_: list[dict[str, str]] = []
        for k in range(int(team_size[i])):
            pool: Sequence[int] = mates if len(mates) > 1 and team_u[i, k, 0] < 0.7 else range(len(ams))
            member = pool[int(team_u[i, k, 1] * len(pool))]
            if member not in taken:
                taken.add(member)
                members_.append({"employee": am_ids[member], "role": _TEAM_ROLES[int(team_role[i, k])]})
        if sponsor[i]:
            members_.append({"employee": teams[ams[o].team].manager, "role": "executive sponsor"})
        account_teams[i] = members_

    # Plain Python lists: they index far faster than numpy scalars, and rows must hold plain values.
    tier_l, sens_l, owner_l, region_l = tier.tolist(), sens.tolist(), owner.tolist(), region.tolist()
    language_l, industry_l, value_l, since_l = language.tolist(), industry.tolist(), value.tolist(), since_days.tolist()
    sat_l, no_sat_l, renewal_l, no_renewal_l = (
        satisfaction.tolist(), no_satisfaction.tolist(), renewal_days.tolist(), no_renewal.tolist()
    )  # fmt: skip
    contact_l, issues_l, status_l, zh_l = (
        contact_seconds.tolist(),
        open_issues.tolist(),
        status.tolist(),
        zh_contacts.tolist(),
    )
    offset_l, channel_l, keep_email_l, keep_phone_l = (
        offset.tolist(),
        channel.tolist(),
        keep_email.tolist(),
        keep_phone.tolist(),
    )
    surname_l, given_l, first_l, last_l = surname.tolist(), given.tolist(), first.tolist(), last.tolist()
    pa_l, pb_l, pc_l = phone_a.tolist(), phone_b.tolist(), phone_c.tolist()
    u0, u1, u2, u3 = (u.tolist() for u in name_u)

    width = max(6, len(str(n)))
    today_ordinal = now.date().toordinal()
    statuses = ("active", "at_risk", "inactive")
    rows: list[dict[str, Any]] = []
    for i in range(n):
        lang = _CLIENT_LANGUAGES[language_l[i]]
        industry_name = INDUSTRIES[industry_l[i]]
        region_name = REGIONS[region_l[i]]
        external_id = f"cli-{i + 1:0{width}d}"
        domain = f"{external_id}.example.com"
        zh = zh_l[i]
        contacts = []
        for j in range(offset_l[i], offset_l[i + 1]):
            if zh:
                sur, sur_py = _ZH_SURNAMES[surname_l[j]]
                giv, giv_py = _ZH_GIVEN[given_l[j]]
                cname, local = sur + giv, f"{giv_py}.{sur_py}"
                phone = f"+86 1{pa_l[j]} {pb_l[j]:04d} {pc_l[j]:04d}"
            else:
                fn, ln = _EN_FIRST[first_l[j]], _EN_LAST[last_l[j]]
                cname, local = f"{fn} {ln}", _ascii_local(fn, ln)
                phone = f"+44 20 7946 {pb_l[j] % 1000:04d}"
            contacts.append(
                {
                    "name": cname,
                    "email": f"{local}@{domain}" if keep_email_l[j] else None,
                    "phone": phone if keep_phone_l[j] else None,
                    "locale": "zh-CN" if zh else "en",
                    "preferred_channel": _CHANNELS[channel_l[j]],
                    "primary": j == offset_l[i],
                }
            )
        rows.append(
            {
                "external_id": external_id,
                "name": names.client(industry_name, region_name, lang, (u0[i], u1[i], u2[i], u3[i])),
                "tier": TIERS[tier_l[i]],
                "annual_value": value_l[i],
                "industry": industry_name,
                "region": region_name,
                "language": lang,
                "sensitivity": sens_l[i],
                "owner": am_ids[owner_l[i]],
                "relationship_since": dt.date.fromordinal(today_ordinal - since_l[i]),
                "last_contact_at": now - dt.timedelta(seconds=contact_l[i]),
                "satisfaction": None if no_sat_l[i] else sat_l[i],
                "renewal_at": None if no_renewal_l[i] else dt.date.fromordinal(today_ordinal + renewal_l[i]),
                "open_issues": issues_l[i],
                "status": statuses[status_l[i]],
                "contacts": contacts,
                "account_team": account_teams.get(i, []),
            }
        )
    return rows
