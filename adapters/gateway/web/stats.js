/*
 * citybus · Drammen live: the Statistics panel.
 *
 * Shows the latest released table of every statistics data set (the public contract
 * statistics.aggregate, one entity per data set): GET api/v1/contracts/statistics.aggregate/entities,
 * then each new release from its own SSE stream (GET api/v1/stream?subject=statistics.aggregate).
 * A table has a row per group (a value per dimension, "all" for a total) with its figures; a
 * suppressed cell says why it is withheld instead of showing figures, and under the table a line
 * says how the release was protected (mechanism, k, ε).
 *
 * Self-contained: it needs nothing from app.js or the map. As there, values reach the page as text
 * only (textContent): nothing here parses data as HTML.
 */
(function () {
  'use strict';

  const CONTRACT = 'statistics.aggregate';
  const API = 'api/v1/';
  const RETRY_MAX = 30000;
  // The figures a row may have, as columns: [heading, the row's text or undefined when it has none].
  const FIGURES = [
    ['mean', (r) => r.mean],
    ['median', (r) => r.median],
    ['range', (r) => (typeof r.min === 'number' || typeof r.max === 'number' ? [r.min, r.max] : undefined)],
    ['sum', (r) => r.sum],
  ];
  // UCUM codes as people write them; anything else is shown as it is, without UCUM's braces.
  const UNITS = { Cel: '°C', CEL: '°C', 'ug/m3': 'µg/m³', '1': '', '%': '%', h: 'h', min: 'min', s: 's' };
  const COUNTED = { persons: 'persons', observations: 'observations', entities: 'entities' };

  const tables = new Map(); // data set -> its last event
  let source = null;
  let retry = 1000;

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function words(slug) {
    const text = String(slug).replace(/-/g, ' ');
    return text.charAt(0).toUpperCase() + text.slice(1);
  }

  function unitText(unit) {
    if (typeof unit !== 'string') return '';
    if (Object.prototype.hasOwnProperty.call(UNITS, unit)) return UNITS[unit];
    return unit.replace(/[{}]/g, '');
  }

  // A figure with as many digits as it needs, at most two (a count of persons has none).
  function figure(value) {
    if (typeof value !== 'number' || !isFinite(value)) return '–';
    if (Number.isInteger(value)) return String(value);
    const abs = Math.abs(value);
    return value.toFixed(abs >= 100 ? 0 : abs >= 10 ? 1 : 2);
  }

  function number(value) {
    if (typeof value !== 'number' || !isFinite(value)) return '?';
    return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(3)));
  }

  function why(row, data) {
    const k = data.privacy && data.privacy.k;
    switch (row.reason) {
      case 'too-few':
        return k ? 'suppressed (fewer than ' + k + (data.counts === 'persons' ? ' persons)' : ')') : 'suppressed (too few)';
      case 'complementary':
        return 'suppressed (would reveal another suppressed cell)';
      case 'threshold':
        return 'suppressed (below the noise threshold)';
      default:
        return 'suppressed';
    }
  }

  // How the release was protected, in a line a reader can weigh the figures by.
  function privacyLine(privacy) {
    const p = privacy || {};
    if (p.mechanism === 'none') return 'Public data, exact figures: no person is in it (mechanism: none).';
    if (p.mechanism === 'k-anonymity') {
      return (
        'k-anonymity: exact figures; no released cell covers fewer than k = ' + number(p.k) +
        ' persons, and suppressed cells cannot be recovered from the totals.'
      );
    }
    if (p.mechanism === 'differential-privacy') {
      let line =
        'Differential privacy (OpenDP): ε = ' + number(p.epsilon) + ', δ = ' + number(p.delta) + ' for this release';
      if (p.budget) line += '; ε spent this period ' + number(p.spent) + ' of ' + number(p.budget);
      line += '; no released cell covers fewer than k = ' + number(p.k) + ' persons';
      if (p.count_scale || p.sum_scale) {
        line += '; noise scale ' + number(p.count_scale) + ' on counts, ' + number(p.sum_scale) + ' on sums';
      }
      if (p.max_contributions) {
        line += '; a person counts in at most ' + number(p.max_contributions) + ' cells, at most ' + number(p.clamp) + ' each';
      }
      return line + '.';
    }
    return 'Protection not stated (' + String(p.mechanism) + ').';
  }

  function groupCells(data, row) {
    const dimensions = Array.isArray(data.dimensions) ? data.dimensions : [];
    const group = Array.isArray(row.group) ? row.group : [];
    if (row.label) {
      const cell = el('th', 'stats-group', row.label);
      cell.scope = 'row';
      cell.colSpan = Math.max(dimensions.length, 1);
      cell.title = group.join(' · ');
      return [cell];
    }
    return dimensions.map((_, i) => {
      const value = group[i];
      const cell = el('th', value === 'all' ? 'stats-group margin' : 'stats-group', value === 'all' ? 'all' : value);
      cell.scope = 'row';
      return cell;
    });
  }

  function figureText(value) {
    return Array.isArray(value) ? figure(value[0]) + '–' + figure(value[1]) : figure(value);
  }

  function renderTable(data) {
    const rows = Array.isArray(data.rows) ? data.rows : [];
    const dimensions = Array.isArray(data.dimensions) ? data.dimensions : [];
    // Only the figures some released row has: a k-anonymous table has no min or max.
    const shown = FIGURES.filter(([, get]) => rows.some((r) => r.status !== 'suppressed' && get(r) !== undefined && get(r) !== null));
    const table = el('table', 'stats-rows');
    const head = el('tr');
    for (const d of dimensions.length ? dimensions : ['group']) head.append(el('th', null, words(d)));
    const n = el('th', 'num', 'n');
    n.title = 'how many ' + (COUNTED[data.counts] || 'counted');
    head.append(n);
    for (const [name] of shown) head.append(el('th', 'num', name));
    const thead = el('thead');
    thead.append(head);
    const body = el('tbody');
    for (const row of rows) {
      const tr = el('tr', row.status === 'suppressed' ? 'suppressed' : 'released');
      tr.dataset.group = (Array.isArray(row.group) ? row.group : []).join('|');
      if ((row.group || []).includes('all')) tr.classList.add('margin');
      tr.append(...groupCells(data, row));
      if (row.status === 'suppressed') {
        const cell = el('td', 'stats-why', why(row, data));
        cell.colSpan = 1 + shown.length;
        tr.append(cell);
      } else {
        tr.append(el('td', 'num', figure(row.count)));
        for (const [, get] of shown) tr.append(el('td', 'num', figureText(get(row))));
      }
      body.append(tr);
    }
    table.append(thead, body);
    const wrap = el('div', 'stats-scroll');
    wrap.append(table);
    return wrap;
  }

  function period(data) {
    let text = String(data.period || '?') + ' · release ' + String(data.release || 1);
    text += data.final ? ' · final' : ' · provisional';
    return text;
  }

  function render(ev) {
    const data = ev.data;
    const list = document.getElementById('statistics-list');
    let box = list.querySelector('details[data-dataset="' + CSS.escape(ev.entity) + '"]');
    if (!box) {
      box = el('details', 'stats');
      box.dataset.dataset = ev.entity;
      const names = [...list.querySelectorAll('details.stats')];
      const after = names.find((other) => other.dataset.dataset > ev.entity);
      list.insertBefore(box, after || null);
    }
    const summary = el('summary');
    summary.append(el('span', 'stats-title', data.title || words(ev.entity)), el('span', 'stats-period', period(data)));
    const unit = unitText(data.unit);
    const measure = data.measure ? 'Figures of ' + data.measure + (unit ? ', in ' + unit : '') : unit ? 'In ' + unit : '';
    const sources = Array.isArray(data.sources) && data.sources.length ? 'computed from ' + data.sources.join(', ') : '';
    box.replaceChildren(
      summary,
      el('p', 'stats-measure sub', [measure, 'n: ' + (COUNTED[data.counts] || 'counted'), sources].filter(Boolean).join('; ')),
      renderTable(data),
      el('p', 'stats-privacy', privacyLine(data.privacy)),
    );
    document.getElementById('statistics-empty').hidden = tables.size > 0;
  }

  // Where an event stands in its stream, to keep the newest when the first load and the stream overlap.
  function newer(ev, than) {
    if (!than) return true;
    const a = /^(.*):(\d+)$/.exec(String(ev.sequence || ''));
    const b = /^(.*):(\d+)$/.exec(String(than.sequence || ''));
    if (a && b && a[1] === b[1]) return Number(a[2]) > Number(b[2]);
    return String(ev.time) >= String(than.time);
  }

  function apply(ev) {
    if (!ev || ev.contract !== CONTRACT || typeof ev.entity !== 'string' || !ev.data) return;
    if (!newer(ev, tables.get(ev.entity))) return;
    tables.set(ev.entity, ev);
    render(ev);
  }

  function load() {
    return fetch(API + 'contracts/' + encodeURIComponent(CONTRACT) + '/entities', { headers: { Accept: 'application/json' } })
      .then((response) => {
        if (response.status === 404) return [];
        if (!response.ok) throw new Error('HTTP ' + response.status);
        return response.json();
      })
      .then(
        (items) => {
          if (Array.isArray(items)) for (const ev of items) apply(ev);
          document.getElementById('statistics').dataset.loaded = 'true';
        },
        (error) => console.warn(CONTRACT, 'not loaded:', error.message),
      );
  }

  function connect() {
    source = new EventSource(API + 'stream?subject=' + encodeURIComponent(CONTRACT));
    source.onopen = () => {
      retry = 1000;
    };
    source.onmessage = (message) => {
      try {
        apply(JSON.parse(message.data));
      } catch (error) {
        console.warn('not a JSON event:', error.message);
      }
    };
    const restart = () => {
      if (source) source.close();
      source = null;
      const wait = retry;
      retry = Math.min(retry * 2, RETRY_MAX);
      window.setTimeout(() => {
        connect();
        load();
      }, wait);
    };
    source.addEventListener('dropped', restart);
    source.onerror = () => {
      // EventSource reconnects by itself (sending Last-Event-ID) unless the gateway refused it.
      if (source && source.readyState === EventSource.CLOSED) restart();
    };
  }

  function start() {
    if (!document.getElementById('statistics-list')) return;
    connect();
    load();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
