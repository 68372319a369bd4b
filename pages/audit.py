"""Activity page: who did what (submit, cancel, retry, export, restore...), newest first, in a lab
with a login; what the signed-in user's role may do."""

from __future__ import annotations

import streamlit as st

from cifar_core import team
from pages import common

LIMIT = 200
COLUMNS = {
    "at": st.column_config.DatetimeColumn("when", format="YYYY-MM-DD HH:mm:ss"),
    "run_id": st.column_config.NumberColumn("run", format="%d"),
    "run_name": st.column_config.TextColumn("run name"),
}


def render() -> None:
    st.title("Activity")
    who = common.actor()
    if who is None:
        st.info("This lab has no login, so it has one local user and records nothing here. With a login "
                "(README, \"Sharing the dashboard\"), every submit, cancel, retry, export and restore is listed "
                "with who did it and when.", icon=":material/info:")
        return
    may = [team.WHAT[a] for a in team.NEEDS if team.refusal(who, a, (who.user,)) is None]
    own = " (cancel, retry and the like only on the runs you submitted)" if who.role == team.RUNNER else ""
    st.caption(f"You are {common.md(who.user)}, a {who.role}: you may read everything"
               + (f", {', '.join(may)}{own}" if may else ", nothing more") + ".")
    users = ["everyone", *common.lab().audit_users()]
    user = st.selectbox("User", users, key="audit_user")
    table = common.lab().audit(None if user == "everyone" else user, LIMIT)
    if table.empty:
        st.info("Nothing recorded yet.")
        return
    st.dataframe(table.drop(columns="id"), hide_index=True, column_config=COLUMNS, key="audit_table")


common.page(render)
