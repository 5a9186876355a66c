"""Resident ID numbers (GB 11643-1999) and display masking, as tables of cases."""

from __future__ import annotations

import datetime as dt

import pytest

from carehub.identity.idcard import InvalidIdNumber, Sex, check_character, is_valid_id_number, parse_id_number
from carehub.identity.masking import mask_address, mask_id_number, mask_name, mask_phone

TODAY = dt.date(2026, 11, 25)


@pytest.mark.parametrize(
    ("number", "birth", "sex"),
    [
        ("11010519491231002X", dt.date(1949, 12, 31), Sex.FEMALE),  # the standard's example
        ("11010519491231002x", dt.date(1949, 12, 31), Sex.FEMALE),  # lower-case x
        ("110101199003071233", dt.date(1990, 3, 7), Sex.MALE),
        ("440304200002290014", dt.date(2000, 2, 29), Sex.MALE),  # leap day
        (" 1101 0119 9003 0712 33 ", dt.date(1990, 3, 7), Sex.MALE),  # pasted with spaces
        ("１１０１０１１９９００３０７１２３３", dt.date(1990, 3, 7), Sex.MALE),  # full-width digits
    ],
)
def test_a_valid_number_is_parsed(number: str, birth: dt.date, sex: Sex) -> None:
    parsed = parse_id_number(number, today=TODAY)
    assert parsed.birth_date == birth
    assert parsed.sex is sex
    assert len(parsed.number) == 18 and parsed.number == parsed.number.upper()
    assert parsed.number not in repr(parsed)  # kept out of logs


@pytest.mark.parametrize(
    ("number", "message"),
    [
        ("110101199003071234", "校验位错误"),
        ("11010519491231002Y", "第18位"),
        ("1101011990030712", "应为18位，当前为16位"),
        ("1101011990030712331", "应为18位，当前为19位"),
        ("110101900307123", "15位"),
        ("11010119900307A233", "前17位只能是数字"),
        ("910101199003071233", "地区码无效"),
        ("010101199003071233", "地区码无效"),
        ("110101199002301233", "出生日期无效"),  # 30 February
        ("110101199013071233", "出生日期无效"),  # month 13
        ("110101189912311233", "早于1900年"),
        ("520103202612311233", "晚于今天"),
        ("", "不能为空"),
        (None, "不能为空"),
        (110101199003071233, "必须是文本"),
    ],
)
def test_an_invalid_number_is_refused_with_a_chinese_reason(number: object, message: str) -> None:
    with pytest.raises(InvalidIdNumber, match=message) as caught:
        parse_id_number(number, today=TODAY)
    assert "1101011990" not in str(caught.value)  # the number itself is not echoed back
    assert not is_valid_id_number(number, today=TODAY)


@pytest.mark.parametrize(
    ("first17", "check"),
    [("11010519491231002", "X"), ("11010119900307123", "3"), ("11010120000101001", "0"), ("32010220101231002", "7")],
)
def test_the_check_character_follows_iso_7064_mod_11_2(first17: str, check: str) -> None:
    assert check_character(first17) == check


@pytest.mark.parametrize(
    ("on", "age"),
    [
        (dt.date(2024, 2, 28), 23),
        (dt.date(2024, 2, 29), 24),
        (dt.date(2025, 2, 28), 24),  # a common year: the birthday comes on 1 March
        (dt.date(2025, 3, 1), 25),
    ],
)
def test_age_counts_whole_years_from_the_birth_date(on: dt.date, age: int) -> None:
    assert parse_id_number("440304200002290014", today=TODAY).age_on(on) == age


def test_a_child_born_today_is_valid_but_tomorrow_is_not() -> None:
    today_number = "11010120261125001"
    assert parse_id_number(today_number + check_character(today_number), today=TODAY).age_on(TODAY) == 0
    tomorrow = "11010120261126001"
    assert not is_valid_id_number(tomorrow + check_character(tomorrow), today=TODAY)


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("110101199003071234", "110***********1234"),
        ("11010519491231002X", "110***********002X"),
        (" 110101199003071234 ", "110***********1234"),
        ("110101900307123", "11**********123"),  # shorter than 18: proportionally fewer shown
        ("1234567890", "1*******90"),  # short: fewer characters shown
        ("12345678", "********"),  # under half the usual length: nothing shown
        ("1234", "****"),
        ("", ""),
        (None, ""),
    ],
)
def test_id_numbers_keep_the_first_three_and_last_four(value: object, masked: str) -> None:
    assert mask_id_number(value) == masked


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("13812345678", "138****5678"),
        ("138 1234 5678", "138****5678"),
        ("+86 138-1234-5678", "138****5678"),
        ("1381234", "1****34"),  # 7 characters: 3 shown, never all of them
        ("123", "***"),
        ("", ""),
        (None, ""),
        (13812345678, "138****5678"),
    ],
)
def test_phone_numbers_keep_the_first_three_and_last_four(value: object, masked: str) -> None:
    assert mask_phone(value) == masked


@pytest.mark.parametrize(
    ("value", "masked"),
    [("张三丰", "张**"), ("张三", "张*"), ("欧阳娜娜", "欧***"), ("张", "*"), (" 李四 ", "李*"), ("", ""), (None, "")],
)
def test_names_keep_the_first_character(value: object, masked: str) -> None:
    assert mask_name(value) == masked


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("北京市朝阳区建国路88号", "北京市朝阳区****"),
        ("广东省深圳市南山区科技园", "广东省深圳市****"),
        ("北京市朝阳区", "北京市****"),  # no more than half of a short address
        ("上海", "上****"),
        ("x", "****"),
        ("", ""),
        (None, ""),
    ],
)
def test_addresses_keep_the_first_six_characters(value: object, masked: str) -> None:
    assert mask_address(value) == masked


@pytest.mark.parametrize("mask", [mask_id_number, mask_phone, mask_name, mask_address])
@pytest.mark.parametrize("value", ["", " ", "\x00", "🙂🙂🙂", "a" * 10_000, 12.5, object(), b"bytes"])
def test_masking_never_raises_and_never_returns_the_value_whole(mask: object, value: object) -> None:
    result = mask(value)  # type: ignore[operator]
    assert isinstance(result, str)
    text = str(value).strip()
    if len(text) > 0:
        assert result != text
