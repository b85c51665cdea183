from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.platforms.dingtalk.fake import FakeDingTalk


@pytest.fixture
def fake() -> Iterator[FakeDingTalk]:
    f = FakeDingTalk(users={
        "emp001": {"userid": "emp001", "name": "李四", "title": "工程师", "dept_id_list": [4],
                   "manager_userid": "mgr001", "unionid": "u-emp001", "active": True,
                   "leader_in_dept": [{"dept_id": 4, "leader": False}]},
        "mgr001": {"userid": "mgr001", "name": "王五", "title": "经理", "dept_id_list": [4],
                   "leader_in_dept": [{"dept_id": 4, "leader": True}]},
    }).start()
    try:
        yield f
    finally:
        f.stop()
