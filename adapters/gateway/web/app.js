/*
 * citybus · Drammen live: the gateway's web page.
 *
 * Reads the gateway's own API and nothing else: the last value of every entity of four public
 * contracts (GET api/v1/contracts/{contract}/entities), then every new message of them from the SSE
 * stream (GET api/v1/stream?subject=…), and an entity's recent values when its panel opens
 * (GET …/entities/{entity}/history). Every message is a CloudEvent in JSON with the contract's body in
 * `data`; a place's position is `data.location`, a GeoJSON Point ([longitude, latitude]).
 *
 * Values come from the bus, so they reach the page as text only (textContent, setAttribute with
 * numbers): nothing here parses data as HTML. Paths are relative, so the page works behind a proxy
 * that mounts the gateway under a prefix.
 */
(function () {
  'use strict';

  const API = 'api/v1/';
  const DRAMMEN = [59.7441, 10.2045]; // Drammen stasjon, before anything is known
  const SVG = 'http://www.w3.org/2000/svg';
  const RETRY_MAX = 30000;
  const PANEL_MAX = 500; // values a panel keeps while it is open
  const JOURNEYS_MAX = 2000; // journeys remembered to draw the railway (a few days of Drammen's trains)
  const CITY_TIME = 'Europe/Oslo'; // times are shown as Drammen's clocks show them

  // ---------------------------------------------------------------- formatting (text only)

  function num(value, digits) {
    return typeof value === 'number' && isFinite(value) ? value.toFixed(digits) : '–';
  }

  function qty(value, digits, unit) {
    return typeof value === 'number' && isFinite(value) ? value.toFixed(digits) + (unit ? ' ' + unit : '') : '–';
  }

  function clock(iso) {
    if (typeof iso !== 'string') return '–';
    const t = new Date(iso);
    if (isNaN(t.getTime())) return '–';
    return t.toLocaleTimeString('en-GB', { timeZone: CITY_TIME, hour: '2-digit', minute: '2-digit' });
  }

  function stamp(iso) {
    if (typeof iso !== 'string') return '–';
    const t = new Date(iso);
    if (isNaN(t.getTime())) return '–';
    return t.toLocaleString('en-GB', { timeZone: CITY_TIME, day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit' });
  }

  function delay(seconds) {
    if (typeof seconds !== 'number') return 'no prognosis';
    const minutes = Math.round(seconds / 60);
    if (minutes === 0) return 'on time';
    return (minutes > 0 ? '+' : '−') + Math.abs(minutes) + ' min';
  }

  function words(slug) {
    const text = String(slug).replace(/-/g, ' ');
    return text.charAt(0).toUpperCase() + text.slice(1);
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  // ---------------------------------------------------------------- what each contract looks like

  const BEACH = {
    id: 'beach',
    contract: 'environment.beach-observation',
    layer: 'Bathing water',
    legend: 'water temperature',
    name: (ev) => words(ev.entity),
    badge: (d) => qty(d.water_temperature, 1, '°C'),
    tone: (d) => (d.water_temperature >= 18 ? 'warm' : d.water_temperature >= 14 ? 'mild' : 'cold'),
    values: (d) => [
      ['Water', qty(d.water_temperature, 1, '°C')],
      ['Air', qty(d.air_temperature, 1, '°C')],
      ['UV index', qty(d.uv_index, 1)],
      ['Depth', qty(d.depth, 1, 'm')],
      ['Measured', stamp(d.observed_at)],
    ],
    series: [
      { label: 'Water temperature', unit: '°C', digits: 1, get: (d) => d.water_temperature },
      { label: 'UV index', unit: '', digits: 1, get: (d) => d.uv_index },
    ],
  };

  function callTime(d) {
    return d.aimed_departure || d.aimed_arrival;
  }

  const TRAINS = {
    id: 'train',
    contract: 'mobility.train-call',
    layer: 'Trains at the stations',
    legend: 'last call and its delay',
    name: (ev) => ev.data.stop_name || ev.entity,
    badge: (d) => d.line + ' ' + (d.status === 'cancelled' ? 'cancelled' : typeof d.delay_seconds === 'number' ? delay(d.delay_seconds) : clock(callTime(d))),
    tone: (d) => (d.status === 'cancelled' || d.delay_seconds >= 300 ? 'late' : d.delay_seconds >= 60 ? 'behind' : 'ok'),
    values: (d) => [
      ['Train', d.line + (d.destination ? ' to ' + d.destination : '')],
      ['Timetabled', clock(callTime(d))],
      ['Expected', clock(d.actual_departure || d.actual_arrival || d.expected_departure || d.expected_arrival)],
      ['Delay', d.status === 'cancelled' ? 'cancelled' : delay(d.delay_seconds)],
      ['Status', d.status],
      ['Platform', d.platform || '–'],
    ],
    series: [{ label: 'Delay', unit: 'min', digits: 0, get: (d) => (typeof d.delay_seconds === 'number' ? d.delay_seconds / 60 : null) }],
    list: {
      title: 'Recent calls',
      columns: ['Time', 'Train', 'To', 'Delay'],
      row: (d) => [clock(callTime(d)), d.line, d.destination || '–', d.status === 'cancelled' ? 'cancelled' : delay(d.delay_seconds)],
    },
  };

  const BIKES = {
    id: 'bike',
    contract: 'mobility.bike-station-status',
    layer: 'City-bike racks',
    legend: 'free bikes · free docks',
    name: (ev) => ev.data.name || 'Rack ' + ev.entity,
    badge: (d) => d.num_bikes_available + ' · ' + d.num_docks_available,
    tone: (d) => (!d.is_renting || !d.is_installed ? 'off' : d.num_bikes_available === 0 ? 'empty' : d.num_docks_available === 0 ? 'full' : 'ok'),
    values: (d) => [
      ['Free bikes', d.num_bikes_available],
      ['Free docks', d.num_docks_available],
      ['Docks', d.capacity === undefined || d.capacity === null ? '–' : d.capacity],
      ['Open', d.is_installed && d.is_renting ? (d.is_returning ? 'yes' : 'renting only') : 'no'],
      ['Reported', stamp(d.reported_at)],
    ],
    series: [
      { label: 'Free bikes', unit: '', digits: 0, get: (d) => d.num_bikes_available },
      { label: 'Free docks', unit: '', digits: 0, get: (d) => d.num_docks_available },
    ],
  };

  // One air-quality message carries one pollutant: a station's state is its latest of each.
  const AIR = {
    id: 'air',
    contract: 'environment.air-quality-observed',
    layer: 'Air quality',
    legend: 'the worst pollutant now (µg/m³)',
    name: (ev) => ev.data.station_name || words(ev.entity),
    worst: (place) => {
      let worst = null;
      for (const d of place.components.values()) {
        if (worst === null || (d.index || 0) > (worst.index || 0)) worst = d;
      }
      return worst;
    },
    badge: (d, place) => {
      const w = AIR.worst(place) || d;
      return w.component + ' ' + num(w.value, 0);
    },
    tone: (d, place) => 'aq' + ((AIR.worst(place) || d).index || 0),
    values: (d, place) => {
      const rows = [];
      for (const c of [...place.components.keys()].sort()) {
        const v = place.components.get(c);
        rows.push([c, qty(v.value, 1, 'µg/m³') + (v.index ? ' (' + ['', 'low', 'moderate', 'high', 'very high'][v.index] + ')' : '')]);
      }
      rows.push(['Measured', stamp(d.observed_at)]);
      return rows;
    },
    seriesOf: (items) => {
      const names = [...new Set(items.map((ev) => ev.data.component))].sort();
      return names.map((c) => ({ label: c, unit: 'µg/m³', digits: 0, get: (d) => (d.component === c ? d.value : null) }));
    },
  };

  const KINDS = [BEACH, TRAINS, BIKES, AIR];
  const BY_CONTRACT = new Map(KINDS.map((k) => [k.contract, k]));

  // ---------------------------------------------------------------- state

  const places = new Map(); // contract|entity -> place
  const railway = new Map(); // sorted stop-place pair -> polyline
  const journeys = new Map(); // service journey -> Map(sequence -> stop place)
  let map = null;
  let layers = new Map();
  let selected = null; // the place whose panel is open
  let panelItems = [];
  let source = null;
  let retry = 1000;
  let fitted = false;

  function keyOf(contract, entity) {
    return contract + '|' + entity;
  }

  function position(ev) {
    const loc = ev && ev.data && ev.data.location;
    if (!loc || loc.type !== 'Point' || !Array.isArray(loc.coordinates)) return null;
    const lon = Number(loc.coordinates[0]);
    const lat = Number(loc.coordinates[1]);
    return isFinite(lat) && isFinite(lon) ? [lat, lon] : null;
  }

  // Where an event stands in its stream, to keep the newest when the first load and the stream overlap.
  function order(ev) {
    const match = /^(.*):(\d+)$/.exec(String(ev.sequence || ''));
    return match ? { stream: match[1], seq: Number(match[2]) } : null;
  }

  function newer(ev, than) {
    if (!than) return true;
    const a = order(ev);
    const b = order(than);
    if (a && b && a.stream === b.stream) return a.seq > b.seq;
    return String(ev.time) >= String(than.time);
  }

  // ---------------------------------------------------------------- the map

  function setupMap() {
    // minZoom 5: a planned journey may reach across Norway (Drammen to Trondheim is 400 km).
    map = L.map('map', { zoomControl: true, minZoom: 5, maxZoom: 18, zoomSnap: 0.25 }).setView(DRAMMEN, 13);
    map.attributionControl.setPrefix('Leaflet');
    L.control.scale({ imperial: false }).addTo(map);
    layers = new Map(KINDS.map((k) => [k.id, L.layerGroup().addTo(map)]));
    layers.set('railway', L.layerGroup().addTo(map));
    // Zoomed out, the city centre's sixteen bike racks would hide each other: they become dots.
    const far = () => map.getContainer().classList.toggle('far', map.getZoom() < 14);
    map.on('zoomend', far);
    far();
    buildLayerList();
  }

  function buildLayerList() {
    const list = document.getElementById('layer-list');
    for (const kind of KINDS) {
      const item = el('li', 'layer ' + kind.id);
      const label = el('label');
      const box = el('input');
      box.type = 'checkbox';
      box.checked = true;
      box.addEventListener('change', () => {
        const group = layers.get(kind.id);
        if (box.checked) group.addTo(map);
        else group.remove();
      });
      label.append(box, el('span', 'swatch ' + kind.id), el('span', 'layer-name', kind.layer));
      const count = el('span', 'count', '0');
      count.id = 'count-' + kind.id;
      item.append(label, count, el('div', 'legend', kind.legend));
      list.append(item);
    }
  }

  function updateCount(kind) {
    let n = 0;
    for (const place of places.values()) if (place.kind === kind) n += 1;
    document.getElementById('count-' + kind.id).textContent = String(n);
  }

  function createPlace(kind, ev, at) {
    const badge = el('div', 'badge ' + kind.id);
    badge.dataset.contract = kind.contract;
    badge.dataset.entity = ev.entity;
    badge.append(el('span', 'dot'), el('span', 'value'));
    const marker = L.marker(at, {
      icon: L.divIcon({ className: 'place', html: badge, iconSize: null }),
      title: String(kind.name(ev)),
      keyboard: true,
      riseOnHover: true,
    });
    const place = { kind, entity: ev.entity, last: null, marker, badge, components: new Map() };
    marker.on('click', () => select(place));
    marker.addTo(layers.get(kind.id));
    places.set(keyOf(kind.contract, ev.entity), place);
    updateCount(kind);
    return place;
  }

  function apply(ev, live) {
    const kind = BY_CONTRACT.get(ev && ev.contract);
    if (!kind || typeof ev.entity !== 'string' || !ev.data) return;
    if (kind === TRAINS) track(ev);
    let place = places.get(keyOf(kind.contract, ev.entity));
    if (!place) {
      const at = position(ev);
      if (!at) return; // nowhere to draw it
      place = createPlace(kind, ev, at);
    }
    if (kind === AIR) {
      const had = place.components.get(ev.data.component);
      if (!had || String(ev.data.observed_at) >= String(had.observed_at)) place.components.set(ev.data.component, ev.data);
    }
    if (!newer(ev, place.last)) return;
    place.last = ev;
    const at = position(ev);
    if (at) place.marker.setLatLng(at);
    place.badge.querySelector('.value').textContent = kind.badge(ev.data, place);
    place.badge.className = 'badge ' + kind.id + ' ' + kind.tone(ev.data, place) + (place === selected ? ' selected' : '');
    place.badge.dataset.time = String(ev.time);
    if (live) {
      // Restart the "just changed" pulse (a CSS animation): a reflow between removing and adding it.
      void place.badge.offsetWidth;
      place.badge.classList.add('fresh');
    }
    if (place === selected) {
      panelItems.push(ev);
      if (panelItems.length > PANEL_MAX) panelItems.shift();
      renderPanel();
    }
  }

  // The railway: consecutive calls of one journey join two stations.
  function track(ev) {
    const d = ev.data;
    if (typeof d.service_journey !== 'string' || typeof d.sequence !== 'number') return;
    let calls = journeys.get(d.service_journey);
    if (!calls) {
      calls = new Map();
      journeys.set(d.service_journey, calls);
      if (journeys.size > JOURNEYS_MAX) journeys.delete(journeys.keys().next().value); // the oldest
    }
    calls.set(d.sequence, ev);
    for (const other of [calls.get(d.sequence - 1), calls.get(d.sequence + 1)]) {
      if (other && other.entity !== ev.entity) joinStations(ev, other);
    }
  }

  function joinStations(a, b) {
    const pair = [a.entity, b.entity].sort().join(' ');
    if (railway.has(pair)) return;
    const from = position(a);
    const to = position(b);
    if (!from || !to) return;
    const line = L.polyline([from, to], { className: 'railway', interactive: false, weight: 4 });
    railway.set(pair, line);
    line.addTo(layers.get('railway'));
  }

  function fit() {
    if (fitted) return;
    const points = [...places.values()].map((p) => p.marker.getLatLng());
    if (points.length === 0) return;
    fitted = true;
    map.fitBounds(L.latLngBounds(points), { padding: [40, 40], maxZoom: 15 });
  }

  // ---------------------------------------------------------------- the panel

  function select(place) {
    selected = place;
    panelItems = place.last ? [place.last] : [];
    document.getElementById('panel').hidden = false;
    document.getElementById('hint').hidden = true;
    for (const p of places.values()) {
      p.badge.classList.toggle('selected', p === place);
      p.marker.setZIndexOffset(p === place ? 1000 : 0);
    }
    renderPanel();
    const url = API + 'contracts/' + encodeURIComponent(place.kind.contract) + '/entities/' + encodeURIComponent(place.entity) + '/history';
    getJSON(url).then((items) => {
      if (selected !== place || !Array.isArray(items)) return;
      const seen = new Set(items.map((ev) => ev.id));
      panelItems = items.concat(panelItems.filter((ev) => !seen.has(ev.id)));
      for (const ev of items) if (place.kind === TRAINS) track(ev);
      renderPanel();
    }, (error) => console.warn('history of', place.entity, 'not read:', error.message));
  }

  function closePanel() {
    if (selected) {
      selected.badge.classList.remove('selected');
      selected.marker.setZIndexOffset(0);
    }
    selected = null;
    panelItems = [];
    document.getElementById('panel').hidden = true;
    document.getElementById('hint').hidden = false;
  }

  function renderPanel() {
    const place = selected;
    if (!place || !place.last) return;
    const kind = place.kind;
    const ev = place.last;
    document.getElementById('panel-title').textContent = kind.name(ev);
    document.getElementById('panel-kind').textContent = kind.layer + ' · ' + ev.entity;
    const values = document.getElementById('panel-values');
    values.replaceChildren();
    for (const [name, value] of kind.values(ev.data, place)) values.append(el('dt', null, name), el('dd', null, value));
    const charts = document.getElementById('panel-charts');
    charts.replaceChildren();
    const series = kind.seriesOf ? kind.seriesOf(panelItems) : kind.series;
    for (const s of series) {
      const points = [];
      for (const item of panelItems) {
        const v = s.get(item.data);
        const t = Date.parse(item.time);
        if (typeof v === 'number' && isFinite(v) && isFinite(t)) points.push([t, v]);
      }
      charts.append(sparkline(s, points));
    }
    const list = document.getElementById('panel-list');
    list.replaceChildren();
    if (kind.list) list.append(table(kind.list, panelItems.slice(-8).reverse()));
    document.getElementById('panel-source').textContent =
      'from ' + (ev.source || '?') + (ev.provenance ? ' (' + ev.provenance + ')' : '') + ' · received ' + stamp(ev.time);
  }

  function table(spec, items) {
    const wrap = el('div', 'calls');
    wrap.append(el('h3', null, spec.title));
    const t = el('table');
    const head = el('tr');
    for (const c of spec.columns) head.append(el('th', null, c));
    t.append(head);
    for (const item of items) {
      const row = el('tr');
      for (const cell of spec.row(item.data)) row.append(el('td', null, cell));
      t.append(row);
    }
    wrap.append(t);
    return wrap;
  }

  // A sparkline: the series as a polyline over time, with its last, lowest and highest value.
  function sparkline(s, points) {
    const figure = el('figure', 'chart');
    const caption = el('figcaption');
    const last = points.length ? points[points.length - 1][1] : null;
    caption.append(el('span', 'chart-label', s.label), el('span', 'chart-last', qty(last, s.digits, s.unit)));
    figure.append(caption);
    const width = 280;
    const height = 56;
    const pad = 4;
    const svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('viewBox', '0 0 ' + width + ' ' + height);
    svg.setAttribute('class', 'sparkline');
    svg.setAttribute('role', 'img');
    svg.setAttribute('aria-label', s.label + ': ' + points.length + ' values');
    if (points.length > 0) {
      const t0 = points[0][0];
      const t1 = points[points.length - 1][0];
      let lo = Math.min(...points.map((p) => p[1]));
      let hi = Math.max(...points.map((p) => p[1]));
      if (hi === lo) {
        hi += 1;
        lo -= 1;
      }
      const x = (t) => (t1 === t0 ? width / 2 : pad + ((t - t0) / (t1 - t0)) * (width - 2 * pad));
      const y = (v) => height - pad - ((v - lo) / (hi - lo)) * (height - 2 * pad);
      const line = document.createElementNS(SVG, 'polyline');
      line.setAttribute('points', points.map((p) => x(p[0]).toFixed(1) + ',' + y(p[1]).toFixed(1)).join(' '));
      line.setAttribute('class', 'spark-line');
      svg.append(line);
      const dot = document.createElementNS(SVG, 'circle');
      dot.setAttribute('cx', x(t1).toFixed(1));
      dot.setAttribute('cy', y(points[points.length - 1][1]).toFixed(1));
      dot.setAttribute('r', '3');
      dot.setAttribute('class', 'spark-dot');
      svg.append(dot);
    }
    figure.append(svg);
    if (points.length > 1) {
      const lo = Math.min(...points.map((p) => p[1]));
      const hi = Math.max(...points.map((p) => p[1]));
      figure.append(el('div', 'chart-range', 'low ' + num(lo, s.digits) + ' · high ' + num(hi, s.digits) + ' · since ' + clock(new Date(points[0][0]).toISOString())));
    } else {
      figure.append(el('div', 'chart-range', points.length ? 'one value so far' : 'no values yet'));
    }
    return figure;
  }

  // ---------------------------------------------------------------- loading and the live stream

  function getJSON(url) {
    return fetch(url, { headers: { Accept: 'application/json' } }).then((response) => {
      if (response.status === 404) return [];
      if (!response.ok) throw new Error(url + ': HTTP ' + response.status);
      return response.json();
    });
  }

  function setState(state, detail) {
    const node = document.getElementById('connection');
    node.dataset.state = state;
    node.textContent = detail ? state + ' (' + detail + ')' : state;
  }

  function loadAll() {
    return Promise.all(
      KINDS.map((kind) =>
        getJSON(API + 'contracts/' + encodeURIComponent(kind.contract) + '/entities').then(
          (items) => {
            if (Array.isArray(items)) for (const ev of items) apply(ev, false);
          },
          (error) => console.warn(kind.contract, 'not loaded:', error.message),
        ),
      ),
    ).then(() => {
      fit();
      document.body.dataset.loaded = 'true';
      // The railway is drawn from the stations' recent calls.
      for (const place of places.values()) {
        if (place.kind !== TRAINS) continue;
        const url = API + 'contracts/' + encodeURIComponent(TRAINS.contract) + '/entities/' + encodeURIComponent(place.entity) + '/history';
        getJSON(url).then((items) => {
          if (Array.isArray(items)) for (const ev of items) track(ev);
        }, () => {});
      }
    });
  }

  // The stream is opened before the first load, so nothing published in between is missed; an
  // event older than what a place shows is ignored (see newer()).
  function connect() {
    const query = KINDS.map((k) => 'subject=' + encodeURIComponent(k.contract)).join('&');
    source = new EventSource(API + 'stream?' + query);
    source.onopen = () => {
      retry = 1000;
      setState('live');
    };
    source.onmessage = (message) => {
      let ev;
      try {
        ev = JSON.parse(message.data);
      } catch (error) {
        console.warn('not a JSON event:', error.message);
        return;
      }
      apply(ev, true);
    };
    source.addEventListener('dropped', (message) => {
      let reason = 'dropped by the gateway';
      try {
        reason = JSON.parse(message.data).reason || reason;
      } catch (error) {
        // keep the general reason
      }
      restart(reason);
    });
    source.onerror = () => {
      // EventSource reconnects by itself (sending Last-Event-ID) unless the gateway refused it.
      if (source.readyState === EventSource.CLOSED) restart('the gateway refused the stream');
      else setState('reconnecting');
    };
  }

  // A stream that will not resume by itself: open a new one and load the last values again.
  function restart(reason) {
    if (source) source.close();
    source = null;
    setState('reconnecting', reason);
    const wait = retry;
    retry = Math.min(retry * 2, RETRY_MAX);
    window.setTimeout(() => {
      connect();
      loadAll();
    }, wait);
  }

  function start() {
    setupMap();
    // What the page's other scripts (journey.js) share: the map and the text-only helpers.
    window.citybus = Object.freeze({ map, el, clock, stamp, delay });
    document.getElementById('panel-close').addEventListener('click', closePanel);
    document.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') closePanel();
    });
    connect();
    loadAll();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
