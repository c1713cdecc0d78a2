// Handsign's service worker, served at /sw.js with scope "/": it only shows Web Push
// notifications and opens the gateway's own page when one is tapped.
//
// It caches nothing and handles no fetch: an approval page must always come fresh from the
// gateway. A notification carries no authority; it only links to the approval page, where the
// person's passkey decides, so a link to anywhere but this origin is refused.
"use strict";

// The URL to open for a notification: this origin's only, else the dashboard.
function sameOrigin(url) {
  try {
    const parsed = new URL(url, self.location.origin);
    if (parsed.origin === self.location.origin) return parsed.href;
  } catch {
    // not a URL: fall through
  }
  return null;
}

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("push", (event) => {
  let message = {};
  try {
    message = event.data ? event.data.json() : {};
  } catch {
    // not JSON: show the generic notification below
  }
  const title = typeof message.title === "string" && message.title ? message.title : "Handsign";
  const options = {
    body: typeof message.body === "string" ? message.body : "",
    data: { url: sameOrigin(message.url) || new URL("/", self.location.origin).href },
    requireInteraction: true,
    icon: "/static/icon-192.png",
  };
  if (typeof message.tag === "string" && message.tag) options.tag = message.tag;
  event.waitUntil(self.registration.showNotification(title, options));
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const url = sameOrigin(event.notification.data && event.notification.data.url);
  if (!url) return;
  event.waitUntil((async () => {
    const open = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
    const tab = open.find((client) => client.url === url);
    if (tab) return tab.focus();
    return self.clients.openWindow(url);
  })());
});
