// pg-jobqueue dashboard: live refresh of the overview and confirmation of destructive forms.
// Served by the dashboard itself (no CDN); the page's CSP allows only this script.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const live = document.querySelector("[data-live-url]");
  if (live) {
    const seconds = Math.max(1, Number(live.dataset.liveSeconds) || 5);
    const refresh = async () => {
      try {
        const response = await fetch(live.dataset.liveUrl, { credentials: "same-origin" });
        // The fragment is server-rendered and escaped like every page.
        if (response.ok) live.innerHTML = await response.text();
      } catch (error) {
        // The next tick tries again (server restarting, network blip).
      }
      setTimeout(refresh, seconds * 1000);
    };
    setTimeout(refresh, seconds * 1000);
  }
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
});
