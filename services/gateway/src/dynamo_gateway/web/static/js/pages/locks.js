import { api, badge, el, fill, pager, params, start, table, when } from "../core.js";

function locks(body, active, offset = 0) {
  return fill(body, async () => {
    const page = await api("/locks", { active, limit: 100, offset });
    return [
      table(
        [
          { label: "#", num: true, value: (l) => l.id },
          { label: "Dataset", value: (l) => el("span", { class: "mono" }, l.dataset) },
          { label: "Block", value: (l) => el("span", { class: "mono" }, l.block || "all") },
          { label: "Sites", value: (l) => l.sites },
          { label: "Until", value: (l) => when(l.until) },
          { label: "Owner", value: (l) => l.owner },
          { label: "Comment", value: (l) => l.comment },
          { label: "Created", value: (l) => when(l.created) },
          { label: "State", value: (l) => (l.active ? badge("active", "done") : badge(l.released ? "released" : "expired")) },
        ],
        page.items,
        { id: "locks-table", empty: "No lock." },
      ),
      pager(page, (o) => locks(body, active, o)),
    ];
  });
}

start(async (content) => {
  const active = params().get("all") === null;
  const body = el("div");
  const box = el(
    "section",
    { class: "panel" },
    el("div", { class: "tabs" }, el("a", { href: "/locks" }, el("button", { type: "button", class: active ? "current" : "" }, "Active")), el("a", { href: "/locks?all" }, el("button", { type: "button", class: active ? "" : "current" }, "All, released and expired too"))),
    el("p", { class: "muted" }, "Locks protect data from detox until they expire; create them with POST /api/v1/locks (a user's token)."),
    body,
  );
  box.loaded = locks(body, active);
  content.append(box);
  return [box];
});
