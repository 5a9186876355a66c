"""Resident identity card numbers (公民身份号码), GB 11643-1999.

Eighteen characters: a six-digit administrative region code (first digit 1-8), the birth date
``YYYYMMDD``, a three-digit sequence code whose last digit is odd for men and even for women, and
an ISO 7064 MOD 11-2 check character (``0``-``9`` or ``X``).

:func:`parse_id_number` returns a :class:`ResidentId` or raises :class:`InvalidIdNumber` whose
message, in Chinese, tells the user what is wrong without repeating the number.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import re
import unicodedata

from .errors import InvalidIdNumber

__all__ = ["InvalidIdNumber", "ResidentId", "Sex", "check_character", "is_valid_id_number", "parse_id_number"]

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
_DIGITS17 = re.compile(r"^[0-9]{17}$")
_EARLIEST = dt.date(1900, 1, 1)



class Sex(enum.StrEnum):
    MALE = "male"
    FEMALE = "female"

    @property
    def label(self) -> str:
        return "男" if self is Sex.MALE else "女"


@dataclasses.dataclass(frozen=True, slots=True)
class ResidentId:
    """A valid resident ID number and what it says about its holder."""

    number: str  # normalised: ASCII, upper-case X
    region_code: str
    birth_date: dt.date
    sequence: str
    sex: Sex

    def age_on(self, on: dt.date) -> int:
        """Age in whole years on ``on`` (someone born on 29 February turns a year older on 1 March
        in common years)."""
        years = on.year - self.birth_date.year
        if (on.month, on.day) < (self.birth_date.month, self.birth_date.day):
            years -= 1
        return years

    def __repr__(self) -> str:  # keep the full number out of logs
        return f"ResidentId(region_code={self.region_code!r}, birth_date={self.birth_date}, sex={self.sex.value})"


def check_character(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character for the first 17 digits."""
    if not _DIGITS17.match(first17):
        raise ValueError("expected 17 ASCII digits")
    return _CHECK[sum(int(c) * w for c, w in zip(first17, _WEIGHTS, strict=True)) % 11]


def _normalise(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidIdNumber("身份证号码不能为空" if value is None else "身份证号码必须是文本")
    # full-width digits and X typed on a phone keyboard become ASCII; pasted spaces are dropped
    return "".join(unicodedata.normalize("NFKC", value).split()).upper()


def parse_id_number(value: object, *, today: dt.date | None = None) -> ResidentId:
    """Validate and parse; ``today`` (default: the local date) bounds the birth date."""
    number = _normalise(value)
    if not number:
        raise InvalidIdNumber("身份证号码不能为空")
    if len(number) == 15 and number.isdigit():
        raise InvalidIdNumber("不再受理15位旧身份证号码，请使用18位身份证号码")
    if len(number) != 18:
        raise InvalidIdNumber(f"身份证号码应为18位，当前为{len(number)}位")
    if not _DIGITS17.match(number[:17]):
        raise InvalidIdNumber("身份证号码前17位只能是数字")
    if number[17] not in "0123456789X":
        raise InvalidIdNumber("身份证号码第18位（校验位）只能是数字或X")
    if number[0] not in "12345678":
        raise InvalidIdNumber("地区码无效：身份证号码首位应为1至8")
    try:
        birth = dt.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        raise InvalidIdNumber("出生日期无效：第7至14位不是真实存在的日期") from None
    if birth < _EARLIEST:
        raise InvalidIdNumber("出生日期无效：早于1900年1月1日")
    if birth > (today or dt.date.today()):
        raise InvalidIdNumber("出生日期无效：晚于今天")
    if check_character(number[:17]) != number[17]:
        raise InvalidIdNumber("校验位错误：请核对身份证号码是否输入正确")
    sequence = number[14:17]
    return ResidentId(
        number=number,
        region_code=number[:6],
        birth_date=birth,
        sequence=sequence,
        sex=Sex.MALE if int(sequence[2]) % 2 == 1 else Sex.FEMALE,
    )


def is_valid_id_number(value: object, *, today: dt.date | None = None) -> bool:
    try:
        parse_id_number(value, today=today)
    except InvalidIdNumber:
        return False
    return True
