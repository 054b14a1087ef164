// recstack dashboard: live figures and confirmations. No framework, no build step.
"use strict";

function formatValue(el, value) {
  if (value === null || value === undefined) return "–";
  const kind = el.dataset.format;
  if (kind === "percent") return (value * 100).toFixed(1) + "%";
  if (kind === "yesno") return value ? "yes" : "no";
  if (typeof value === "number" && !Number.isInteger(value)) return String(Math.round(value * 100) / 100);
  return String(value);
}

function poll(section) {
  const url = section.dataset.live;
  const refresh = async () => {
    try {
      const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!response.ok) return;
      const figures = await response.json();
      section.querySelectorAll("[data-field]").forEach((el) => {
        if (el.dataset.field in figures) el.textContent = formatValue(el, figures[el.dataset.field]);
      });
      document.querySelectorAll("[data-field='champion']").forEach((el) => {
        if ("champion" in figures) el.textContent = figures.champion;
      });
    } catch (error) {
      // The server may be restarting: keep the last figures and try again at the next tick.
    }
  };
  window.setInterval(refresh, 5000);
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-live]").forEach(poll);
  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });
});
