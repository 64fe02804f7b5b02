/*
 * citybus · Drammen live: the Journey panel.
 *
 * Asks the gateway's journey route (GET api/v1/journey?from=…&to=…&depart=…), which asks the journey
 * planner on the bus, and shows its answer: each journey with its legs (mode, line, from → to, times,
 * how the times are known, the delay), or the plan's one line saying why there is none. The chosen
 * journey (the first, until another is clicked) is drawn on the map as straight lines between the
 * ends of its legs.
 *
 * As in app.js, values reach the page as text only (textContent); the map and the helpers come from
 * app.js (window.citybus), which runs first.
 */
(function () {
  'use strict';

  const ROUTE = 'api/v1/journey';
  const MODES = {
    rail: 'Train',
    bus: 'Bus',
    coach: 'Coach',
    tram: 'Tram',
    metro: 'Metro',
    water: 'Boat',
    air: 'Plane',
    cableway: 'Cable car',
    funicular: 'Funicular',
    walk: 'Walk',
    bike: 'City bike',
  };

  let shared = null; // window.citybus: map, el, clock, delay
  let drawn = null; // the layer of the drawn journey
  let asked = 0; // the number of the latest request: an answer to an older one is dropped

  function node(id) {
    return document.getElementById(id);
  }

  function point(place) {
    const loc = place && place.location;
    if (!loc || loc.type !== 'Point' || !Array.isArray(loc.coordinates)) return null;
    const lon = Number(loc.coordinates[0]);
    const lat = Number(loc.coordinates[1]);
    return isFinite(lat) && isFinite(lon) ? [lat, lon] : null;
  }

  function duration(seconds) {
    if (typeof seconds !== 'number' || !isFinite(seconds)) return '–';
    const minutes = Math.round(seconds / 60);
    if (minutes < 60) return minutes + ' min';
    return Math.floor(minutes / 60) + ' h ' + String(minutes % 60).padStart(2, '0') + ' min';
  }

  function changes(n) {
    return n === 0 ? 'no changes' : n === 1 ? '1 change' : n + ' changes';
  }

  function placeName(place) {
    return (place && place.name) || '?';
  }

  // ---------------------------------------------------------------- the answer

  function setState(state, message) {
    node('journey-form').dataset.state = state;
    node('journey-message').textContent = message;
  }

  function legItem(leg) {
    const el = shared.el;
    const item = el('li', 'leg ' + leg.mode);
    item.dataset.mode = String(leg.mode);
    let what = MODES[leg.mode] || String(leg.mode);
    if (leg.line) what += ' ' + leg.line;
    if (leg.headsign) what += ' to ' + leg.headsign;
    if (typeof leg.distance === 'number') what += ' · ' + Math.round(leg.distance) + ' m';
    item.append(
      el('span', 'leg-mode', what),
      el('span', 'leg-places', placeName(leg.origin) + ' → ' + placeName(leg.destination)),
      el('span', 'leg-times', shared.clock(leg.departure) + ' – ' + shared.clock(leg.arrival)),
    );
    const known = el('span', 'leg-known ' + leg.known, leg.known);
    item.append(known);
    if (typeof leg.delay_seconds === 'number') {
      const late = leg.delay_seconds >= 300 ? 'late' : leg.delay_seconds >= 60 ? 'behind' : 'ok';
      item.append(el('span', 'leg-delay ' + late, shared.delay(leg.delay_seconds)));
    }
    return item;
  }

  function journeyItem(journey, index) {
    const el = shared.el;
    const item = el('li', 'journey-item');
    item.dataset.index = String(index);
    const head = el('button', 'journey-head');
    head.type = 'button';
    head.append(
      el('span', 'journey-times', shared.clock(journey.departure) + ' → ' + shared.clock(journey.arrival)),
      el('span', 'journey-summary', duration(journey.duration) + ' · ' + changes(journey.changes)),
    );
    head.addEventListener('click', () => draw(journey, index));
    const legs = el('ol', 'legs');
    for (const leg of journey.legs || []) legs.append(legItem(leg));
    item.append(head, legs);
    return item;
  }

  function render(plan) {
    const list = node('journey-list');
    list.replaceChildren();
    const journeys = Array.isArray(plan.journeys) ? plan.journeys : [];
    journeys.forEach((journey, index) => list.append(journeyItem(journey, index)));
    setState(plan.status === 'ok' ? 'done' : 'refused', String(plan.message || plan.status));
    suggest(plan);
    node('journey-validity').textContent =
      plan.valid_from && plan.valid_to ? 'Timetable valid ' + plan.valid_from + ' to ' + plan.valid_to : '';
    if (journeys.length) draw(journeys[0], 0);
  }

  // An unknown place: its nearest names as buttons that put the name in the field and ask again. The
  // plan names the text it did not know ('Oslo Sentral'), which tells which field it came from.
  function suggest(plan) {
    const box = node('journey-suggestions');
    box.replaceChildren();
    if (plan.status !== 'unknown-place' || !Array.isArray(plan.suggestions)) return;
    const message = String(plan.message || '');
    const field = ['journey-from', 'journey-to'].find((id) => message.includes("'" + node(id).value.trim() + "'"));
    if (!field) return;
    for (const name of plan.suggestions) {
      const button = shared.el('button', 'suggestion', name);
      button.type = 'button';
      button.addEventListener('click', () => {
        node(field).value = String(name);
        node('journey-form').requestSubmit();
      });
      box.append(button);
    }
  }

  // The journey on the map: a straight line per leg between its ends.
  function draw(journey, index) {
    drawn.clearLayers();
    const points = [];
    for (const leg of journey.legs || []) {
      const from = point(leg.origin);
      const to = point(leg.destination);
      if (!from || !to) continue;
      L.polyline([from, to], { className: 'journey-leg ' + leg.mode, interactive: false, weight: 5 }).addTo(drawn);
      L.circleMarker(from, { className: 'journey-stop', radius: 5, interactive: false }).addTo(drawn);
      L.circleMarker(to, { className: 'journey-stop', radius: 5, interactive: false }).addTo(drawn);
      points.push(from, to);
    }
    for (const item of node('journey-list').children) item.classList.toggle('drawn', item.dataset.index === String(index));
    node('journey-list').dataset.drawn = String(index);
    if (points.length) shared.map.fitBounds(L.latLngBounds(points), { padding: [40, 40], maxZoom: 14, animate: false });
  }

  // ---------------------------------------------------------------- asking

  function ask(event) {
    event.preventDefault();
    const query = new URLSearchParams({ from: node('journey-from').value.trim(), to: node('journey-to').value.trim() });
    const depart = node('journey-depart').value;
    if (depart) query.set('depart', depart); // no offset: the gateway reads it in Drammen's time
    const number = ++asked;
    node('journey-list').replaceChildren();
    node('journey-suggestions').replaceChildren();
    node('journey-validity').textContent = '';
    drawn.clearLayers();
    setState('asking', 'Looking for journeys…');
    fetch(ROUTE + '?' + query.toString(), { headers: { Accept: 'application/json' } })
      .then((response) => response.json().catch(() => null).then((body) => [response, body]))
      .then(
        ([response, body]) => {
          if (number !== asked) return;
          // A plan (whatever its HTTP status) has a status word and journeys; anything else is a problem.
          if (body && typeof body.status === 'string' && Array.isArray(body.journeys)) render(body);
          else setState('error', body && typeof body.detail === 'string' ? body.detail : 'the gateway answered HTTP ' + response.status);
        },
        (error) => {
          if (number === asked) setState('error', 'the gateway did not answer: ' + error.message);
        },
      );
  }

  function start() {
    shared = window.citybus;
    if (!shared) return; // app.js did not start: there is no map to draw on
    drawn = L.layerGroup().addTo(shared.map);
    node('journey-form').addEventListener('submit', ask);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
