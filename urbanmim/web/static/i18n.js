// The browser half of urbanmim's message catalogues (urbanmim/web/i18n.py is the server half):
// the page embeds the keys it needs as JSON (#i18n-messages); t(key, params) formats them with the
// same {name} placeholders and the same plural rule (key.one / key.other by Intl.PluralRules).
(function () {
  "use strict";
  const el = document.getElementById("i18n-messages");
  const lang = (el && el.dataset.lang) || document.documentElement.lang || "en";
  let messages = {};
  try { messages = el ? JSON.parse(el.textContent) : {}; } catch (e) { messages = {}; }
  const rules = new Intl.PluralRules(lang);
  // numbers and dates in the reader's regional variant of the page language (en-GB, de-AT...)
  const locale = (navigator.languages || []).find((l) => l.split("-")[0].toLowerCase() === lang) || lang;
  function format(msg, params) {
    return msg.replace(/\{(\w+)\}/g, (m, name) => (params && name in params ? String(params[name]) : m));
  }
  function t(key, params) {
    if (params && typeof params.count === "number") {
      const plural = messages[key + "." + rules.select(params.count)] || messages[key + ".other"];
      if (plural) return format(plural, params);
    }
    const msg = messages[key];
    return msg === undefined ? key : format(msg, params);
  }
  const numberFormat = new Intl.NumberFormat(locale, { maximumFractionDigits: 2 });
  window.urbanmimI18n = {
    lang, locale, t, messages,
    number: (v) => (typeof v === "number" ? numberFormat.format(v) : String(v)),
    dateTime: (iso) => new Date(iso).toLocaleString(locale, { dateStyle: "medium", timeStyle: "short" }),
  };
})();
