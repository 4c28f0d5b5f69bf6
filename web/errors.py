"""Errors a person sees, in Chinese (issue 15 part 5).

* :func:`validation_message` — FastAPI's request validation errors (422) as
  one Chinese sentence naming each field and what is wrong with it, without
  the value that was sent: a 100 KB field answers a short message, not the
  field back (nothing of the input is echoed, so nothing of it is reflected
  either). The API answers ``{"detail": "…", "errors": [{"field", "message"}]}``;
  a page the error page (``web.app``).
* :func:`http_message` — Starlette's own English details (``Not Found``,
  ``Method Not Allowed``…) in Chinese; a detail the app wrote is kept.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

# Field names of the app's query strings, forms and bodies as people read them.
FIELD_LABEL = {
    "q": "关键词", "place": "属地", "kind": "来源类型", "topic": "话题", "severity": "级别", "state": "状态",
    "department": "部门", "overdue": "仅看超时", "sort": "排序", "page": "页码", "size": "每页条数",
    "from": "起始日期", "to": "截止日期", "by": "统计口径", "reason": "理由", "note": "说明", "outcome": "办结结果",
    "milestone": "节点", "evidence_url": "佐证链接", "met_at": "完成时间", "into": "并入事件", "post_ids": "帖子",
    "username": "用户名", "password": "密码", "new_password": "新密码", "old_password": "原密码",
    "display_name": "显示名", "role": "角色", "jurisdiction": "属地", "name": "名称", "params": "检索条件",
    "rule": "时限规则", "merge_q": "检索事件", "new": "新工单", "done": "结果", "tid": "工单编号",
    "eid": "事件编号", "uid": "用户编号", "sid": "编号", "next": "跳转地址", "label": "名称",
}
WHERE = {"query": "查询参数", "path": "路径参数", "body": "请求体", "header": "请求头", "cookie": "Cookie"}


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [p for p in loc if not isinstance(p, int)]
    if len(parts) <= 1:
        return WHERE.get(str(parts[0]), "请求") if parts else "请求"
    name = str(parts[-1])
    return FIELD_LABEL.get(name, name)


def _what(err: dict[str, Any]) -> str:
    """What is wrong, in Chinese (from pydantic's error type and context, never the input)."""
    t = str(err.get("type") or "")
    ctx = err.get("ctx") or {}
    if t == "missing":
        return "为必填项"
    if t in ("string_too_long", "too_long", "bytes_too_long"):
        n = ctx.get("max_length")
        return f"过长（最多 {n} {'项' if t == 'too_long' else '字'}）" if n is not None else "过长"
    if t in ("string_too_short", "too_short", "bytes_too_short"):
        n = ctx.get("min_length")
        return "不能为空" if n in (None, 1) else f"过短（至少 {n} {'项' if t == 'too_short' else '字'}）"
    if t in ("int_parsing", "int_type", "int_from_float"):
        return "须为整数"
    if t in ("float_parsing", "float_type", "decimal_parsing"):
        return "须为数字"
    if t in ("bool_parsing", "bool_type"):
        return "须为是/否（true/false、1/0）"
    if t in ("greater_than_equal", "greater_than"):
        return f"须{'不小于' if t == 'greater_than_equal' else '大于'} {ctx.get('ge', ctx.get('gt'))}"
    if t in ("less_than_equal", "less_than"):
        return f"须{'不大于' if t == 'less_than_equal' else '小于'} {ctx.get('le', ctx.get('lt'))}"
    if t in ("datetime_parsing", "datetime_type", "datetime_from_date_parsing", "timezone_aware"):
        return "须为带时区的时间（如 2026-11-02T09:00:00+08:00）"
    if t in ("date_parsing", "date_type", "date_from_datetime_parsing"):
        return "须为日期（YYYY-MM-DD）"
    if t in ("string_type", "string_unicode"):
        return "须为文本"
    if t in ("list_type", "tuple_type", "set_type"):
        return "须为列表"
    if t in ("dict_type", "model_type", "model_attributes_type"):
        return "格式有误（应为 JSON 对象）"
    if t == "json_invalid":
        return "不是有效的 JSON"
    if t in ("enum", "literal_error"):
        expected = ctx.get("expected")
        return f"取值无效（可选：{expected}）" if expected else "取值无效"
    if t == "string_pattern_mismatch":
        return "格式有误"
    if t == "extra_forbidden":
        return "不是可用的字段"
    if t in ("url_parsing", "url_scheme", "url_type"):
        return "须为 http(s) 网址"
    if t == "value_error":
        # The project's own validators raise Chinese messages; pydantic prefixes "Value error, ".
        msg = str(err.get("msg") or "")
        msg = msg.removeprefix("Value error, ").strip()
        if msg and any("\u4e00" <= c <= "\u9fff" for c in msg) and len(msg) <= 200:
            return msg
        return "取值无效"
    return "取值无效"


def validation_errors(errors: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Each error as ``{"field": name, "message": 中文}`` (no input)."""
    out = []
    for err in errors:
        loc = tuple(err.get("loc") or ())
        names = [str(p) for p in loc[1:] if not isinstance(p, int)]
        out.append({"field": ".".join(names) or str(loc[0] if loc else ""), "message": f"{_field(loc)}{_what(err)}"})
    return out


def validation_message(errors: list[dict[str, Any]]) -> str:
    """One sentence: ``请求有误：理由为必填项；节点过长（最多 40 字）``."""
    seen: list[str] = []
    for e in validation_errors(errors):
        if e["message"] not in seen:
            seen.append(e["message"])
    return "请求有误：" + "；".join(seen[:10]) + ("；……" if len(seen) > 10 else "")


# Starlette's default details (the status phrase) in Chinese.
HTTP_MESSAGE = {
    400: "请求有误",
    401: "请先登录",
    403: "无权执行此操作",
    404: "页面或接口不存在",
    405: "不支持该请求方法",
    406: "无法提供所要求的格式",
    413: "请求体过大",
    414: "请求地址过长",
    415: "不支持的内容类型",
    429: "请求过于频繁，请稍后再试",
    500: "服务器内部错误",
    503: "服务暂不可用，请稍后再试",
}


def http_message(status: int, detail: Any) -> str:
    """``detail`` when the app wrote it; Starlette's English default → Chinese."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    if detail is None or detail == "" or detail == phrase:
        return HTTP_MESSAGE.get(status, f"请求失败（状态 {status}）")
    return str(detail)


__all__ = ["FIELD_LABEL", "HTTP_MESSAGE", "http_message", "validation_errors", "validation_message"]
