/* app.js: the paasops dashboard. It reads the daemon's /v1 JSON API with the
 * token the user pastes (kept in sessionStorage only) and polls the current
 * view every few seconds. Everything from the API reaches the page as text
 * (text nodes, textContent), never as markup. */
(function () {
  'use strict';

  // Every call the page makes. tests/e2e/test_ui.py checks that each exists
  // in the daemon's route table, so keep every /v1 path in this table.
  const API = {
    apps: 'GET /v1/apps',
    app: 'GET /v1/apps/{app}',
    instances: 'GET /v1/apps/{app}/instances',
    releases: 'GET /v1/apps/{app}/releases',
    deploy: 'GET /v1/apps/{app}/deploy',
    stats: 'GET /v1/apps/{app}/stats',
    logs: 'GET /v1/logs',
    events: 'GET /v1/events',
    alerts: 'GET /v1/alerts',
    restart: 'POST /v1/apps/{app}/restart',
    scale: 'POST /v1/apps/{app}/scale',
  };
  const REFRESH_MS = 5000;
  const TOKEN_KEY = 'paasops.token';

  const $ = (id) => document.getElementById(id);
  const view = $('view');

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  // Calls endpoint name; opts: app (for {app}), query (object), body.
  // Resolves to the JSON answer; rejects with an ApiError carrying the
  // API's own message.
  async function call(name, opts = {}) {
    const [method, pattern] = API[name].split(' ');
    let url = pattern.replace('{app}', encodeURIComponent(opts.app || ''));
    const query = new URLSearchParams();
    for (const [k, v] of Object.entries(opts.query || {}))
      if (v !== undefined && v !== null && v !== '') query.set(k, v);
    if (query.toString()) url += '?' + query;
    const init = {method, cache: 'no-store', headers: {Authorization: 'Bearer ' + token()}};
    if (opts.body) {
      init.body = JSON.stringify(opts.body);
      init.headers['Content-Type'] = 'application/json';
    }
    let res;
    try {
      res = await fetch(url, init);
    } catch (e) {
      throw new ApiError(0, 'cannot reach the daemon (' + e.message + ')');
    }
    const doc = await res.json().catch(() => null);
    if (!res.ok)
      throw new ApiError(res.status, doc && doc.error ? doc.error.message : `HTTP ${res.status}`);
    return doc;
  }

  /* ---- DOM helpers: strings always become text nodes ---- */

  function h(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v);
    }
    for (const k of kids.flat(Infinity))
      if (k !== null && k !== undefined && k !== false) e.append(k instanceof Node ? k : String(k));
    return e;
  }

  function table(heads, rows, empty) {
    if (!rows.length) return h('p', {class: 'muted'}, empty);
    return h('table', null,
      h('thead', null, h('tr', null, heads.map((t) => h('th', null, t)))),
      h('tbody', null, rows.map((r) => h('tr', null, r.map((c) => h('td', null, c))))));
  }

  const appLink = (name) => h('a', {href: '#/apps/' + encodeURIComponent(name)}, name);
  const badge = (s) => h('span', {class: 'badge ' + String(s).replace(/[^a-z0-9-]/gi, '')}, s);
  const dash = (v) => (v === null || v === undefined || v === '' ? '–' : v);
  const when = (iso) => {
    if (!iso) return '–';
    const d = new Date(iso);
    return d.toDateString() === new Date().toDateString() ? d.toLocaleTimeString() : d.toLocaleString();
  };
  const ago = (iso) => (iso ? dur(Date.now() - Date.parse(iso)) + ' ago' : '–');
  const secs = (x) => (typeof x === 'number' ? (x < 1 ? +(x * 1000).toPrecision(3) + ' ms' : round(x) + ' s') : '–');
  const round = (x) => (typeof x === 'number' ? Math.round(x * 100) / 100 : dash(x));

  function dur(ms) {
    if (ms === null || ms === undefined) return '–';
    const s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return s + 's';
    if (s < 3600) return Math.floor(s / 60) + 'm' + (s % 60) + 's';
    if (s < 86400) return Math.floor(s / 3600) + 'h' + Math.floor((s % 3600) / 60) + 'm';
    return Math.floor(s / 86400) + 'd' + Math.floor((s % 86400) / 3600) + 'h';
  }

  function bytes(n) {
    if (typeof n !== 'number') return '–';
    const units = ['B', 'KiB', 'MiB', 'GiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n) + ' ' + units[i];
  }

  function appState(a) {
    const ps = a.processes || [];
    if (a.stopped) return 'stopped';
    if (a.rolling_out) return 'deploying';
    if (ps.some((p) => p.crashed > 0)) return 'crashed';
    if (ps.some((p) => !p.stopped && p.ready < p.instances)) return 'degraded';
    return 'running';
  }

  function autoscale(p) {
    const a = p.autoscale;
    if (!a) return null;
    let s = `${p.name}: ${a.min}–${a.max} on ${a.metric} (target ${a.target})`;
    if (a.current_value !== null) s += `, now ${round(a.current_value)}`;
    if (a.desired !== null) s += `, wants ${a.desired}`;
    if (a.panic) s += ', in panic';
    return h('div', null, s);
  }

  // Puts what a settled promise gave into box: render(value), or the error.
  function fill(box, settled, render) {
    if (settled.status === 'fulfilled') box.replaceChildren(...[render(settled.value)].flat());
    else box.replaceChildren(h('p', {class: 'error'}, settled.reason.message));
  }

  // Like Promise.allSettled, but a refused token ends the session at once.
  async function settle(promises) {
    const all = await Promise.allSettled(promises);
    const refused = all.find((s) => s.status === 'rejected' && s.reason.status === 401);
    if (refused) throw refused.reason;
    return all;
  }

  function section(title, ...extra) {
    const body = h('div');
    view.append(h('section', {class: 'card'}, h('h2', null, title), extra, body));
    return body;
  }

  /* ---- views: each builds its frame once and returns its refresh ---- */

  // Routes per app, from its spec; fetched again when its release changes.
  const routeCache = new Map();

  async function routesOf(app) {
    const c = routeCache.get(app.name);
    if (c && c.release === app.release) return c.routes;
    const detail = await call('app', {app: app.name});
    const routes = [];
    for (const [proc, p] of Object.entries(detail.spec.processes))
      for (const r of p.routes || []) routes.push(`${r.host || '*'}${r.path} → ${proc}`);
    routeCache.set(app.name, {release: app.release, routes});
    return routes;
  }

  function appsView() {
    const box = section('Apps');
    return async () => {
      const {apps} = await call('apps');
      const routes = await settle(apps.map(routesOf));
      box.replaceChildren(table(
        ['App', 'State', 'Release', 'Instances ready / wanted', 'Autoscale', 'Routes'],
        apps.map((a, i) => [
          appLink(a.name),
          badge(appState(a)),
          a.release ? 'v' + a.release : '–',
          a.processes.map((p) => h('div', null, `${p.name} ${p.ready}/${p.instances}`)),
          a.processes.map(autoscale),
          routes[i].status === 'fulfilled' ? routes[i].value.map((r) => h('div', null, r)) : '?',
        ]),
        'No apps yet: deploy one with paasops deploy.'));
    };
  }

  function appView(name) {
    const state = h('span');
    view.append(h('h1', null, h('a', {href: '#/'}, 'Apps'), ' / ', name, ' ', state));

    const proc = h('select', {'aria-label': 'process type', onchange: () => { count.value = ''; tick(); }});
    const count = h('input', {type: 'number', min: '0', max: '10000', 'aria-label': 'instances'});
    view.append(h('div', {class: 'actions'},
      h('button', {type: 'button', onclick: () => act(
        `Restart every instance of ${name}? They are replaced one at a time.`,
        'restart', {app: name, body: {}}, (r) => 'restarting ' + r.restarted.join(', '))}, 'Restart app'),
      h('form', {onsubmit: (ev) => {
        ev.preventDefault();
        const n = Number(count.value);
        if (!proc.value || count.value === '' || !Number.isInteger(n) || n < 0)
          return flash('Give a whole number of instances.', 'error');
        act(`Scale ${name} ${proc.value} to ${n} instance(s)?`, 'scale',
          {app: name, body: {processes: {[proc.value]: n}}}, () => `scaled ${proc.value} to ${n}`);
      }}, 'Scale ', proc, ' to ', count, ' ', h('button', {type: 'submit'}, 'Scale'))));

    const procs = section('Processes');
    const insts = section('Instances');
    const deploy = section('Deploy');
    const releases = section('Releases');
    const stats = section('Router');
    const search = h('input', {type: 'search', placeholder: 'search, e.g. timeout OR status:500 -healthz',
      'aria-label': 'log search'});
    let q = '';
    const logs = section('Logs', h('form', {class: 'search', onsubmit: (ev) => {
      ev.preventDefault();
      q = search.value.trim();
      tick();
    }}, search, ' ', h('button', {type: 'submit'}, 'Search')));
    const events = section('Events');

    return async () => {
      const got = await settle([
        call('app', {app: name}), call('instances', {app: name}), call('deploy', {app: name}),
        call('releases', {app: name}), call('stats', {app: name}),
        call('logs', {query: {app: name, q, limit: 100}}),
        call('events', {query: {app: name, limit: 20}})]);
      fill(procs, got[0], (a) => {
        state.replaceChildren(badge(appState(a)));
        const names = a.processes.map((p) => p.name);
        if ([...proc.options].map((o) => o.value).join() !== names.join())
          proc.replaceChildren(...names.map((n) => h('option', {value: n}, n)));
        const cur = a.processes.find((p) => p.name === proc.value);
        if (count.value === '' && cur && document.activeElement !== count) count.value = cur.instances;
        return table(['Process', 'Command', 'Ready / wanted', 'Restart', 'Autoscale'],
          a.processes.map((p) => [p.name, h('code', null, p.command), `${p.ready}/${p.instances}`,
            p.restart, dash(autoscale(p))]), 'No process types.');
      });
      fill(insts, got[1], (r) => table(
        ['Instance', 'State', 'Port', 'PID', 'Restarts', 'Uptime', 'Release', 'CPU', 'Memory', 'Reason'],
        r.instances.map((i) => [i.id, badge(i.state), dash(i.port), dash(i.pid), i.restarts,
          i.state === 'ready' || i.state === 'starting' || i.state === 'unhealthy' ? dur(i.uptime_ms) : '–',
          i.release ? 'v' + i.release : '–', i.cpu_percent === null ? '–' : round(i.cpu_percent) + '%',
          bytes(i.rss_bytes), dash(i.reason)]), 'No instances.'));
      fill(deploy, got[2], (d) => h('dl', null,
        h('dt', null, 'Release'), h('dd', null, d.version ? `v${d.version}` : '–',
          d.from ? ` (from v${d.from})` : ''),
        h('dt', null, 'Phase'), h('dd', null, d.phase,
          d.rollout && d.rollout.rollout ? ': ' + d.rollout.rollout.phase : ''),
        h('dt', null, 'Result'), h('dd', null, d.result ? badge(d.result) : 'running', d.reason ? ' ' + d.reason : ''),
        h('dt', null, 'Started'), h('dd', null, when(d.started_at)),
        h('dt', null, 'Finished'), h('dd', null, when(d.finished_at))));
      fill(releases, got[3], (r) => table(
        ['Release', 'Status', 'Author', 'Message', 'Created', 'Reason'],
        r.releases.map((x) => ['v' + x.version, badge(x.status), dash(x.author), dash(x.message),
          ago(x.created_at), dash(x.reason)]), 'No releases.'));
      fill(stats, got[4], (s) => [
        table(['Requests', '2xx', '3xx', '4xx', '5xx', 'In flight', 'p50', 'p95', 'p99', 'Retries',
          'Connect errors'], [[s.requests, s.status['2xx'], s.status['3xx'], s.status['4xx'],
          s.status['5xx'], s.inflight, secs(s.p50_seconds), secs(s.p95_seconds),
          secs(s.p99_seconds), s.retries, s.connect_errors]], ''),
        table(['Route', 'Process', 'Requests', '5xx', 'p95'], s.routes.map((r) => [r.route, r.process,
          r.requests, r.status['5xx'], secs(r.p95_seconds)]), 'No routes.')]);
      fill(logs, got[5], (r) => (r.lines.length ? h('div', {class: 'logs'}, r.lines.map((l) =>
        h('div', {class: 'log ' + (l.stream === 'stderr' ? 'stderr' : '')},
          h('span', {class: 'muted'}, when(l.time), ' ', dash(l.instance || l.stream)), ' ', l.line)))
        : h('p', {class: 'muted'}, q ? 'No line matches.' : 'No lines yet.')));
      fill(events, got[6], (r) => eventsTable(r.events, false));
    };
  }

  function eventsTable(evs, withApp) {
    const heads = ['Time', 'App', 'Subject', 'Type', 'State', 'Reason'];
    const rows = evs.slice().reverse().map((e) => [when(e.time), e.app ? appLink(e.app) : '–',
      dash(e.instance || e.process), e.type, e.state ? badge(e.state) : '–', dash(e.reason)]);
    if (!withApp) [heads, ...rows].forEach((r) => r.splice(1, 1));
    return table(heads, rows, 'No events.');
  }

  function alertsView() {
    const box = section('Active alerts');
    return async () => {
      const r = await call('alerts');
      box.replaceChildren(table(['State', 'Severity', 'Alert', 'Subject', 'Summary', 'Since'],
        r.alerts.map((a) => [badge(a.state), badge(a.severity), a.name,
          dash(a.labels.instance || (a.labels.process ? `${a.labels.app}.${a.labels.process}` : a.labels.app)),
          dash(a.annotations.summary), ago(a.fired_at || a.active_at)]), 'Nothing is firing.'));
    };
  }

  function eventsView() {
    const box = section('Events');
    return async () => {
      const r = await call('events', {query: {limit: 100}});
      box.replaceChildren(eventsTable(r.events, true));
    };
  }

  /* ---- actions ---- */

  async function act(question, name, opts, done) {
    if (!window.confirm(question)) return;
    try {
      flash(done(await call(name, opts)), 'notice');
    } catch (e) {
      if (e.status === 401) return signOut('The daemon refused the token: ' + e.message);
      flash(e.message, 'error'); // a 403 says what the token may not do
    }
    tick();
  }

  function flash(text, kind) {
    const m = $('message');
    m.textContent = text || '';
    m.className = kind || '';
    m.hidden = !text;
  }

  /* ---- session, routing and polling ---- */

  const token = () => sessionStorage.getItem(TOKEN_KEY);
  let refresh = null;
  let generation = 0; // a new view or session makes older refreshes moot
  let timer = null;

  function route() {
    const hash = location.hash.replace(/^#/, '') || '/';
    const m = hash.match(/^\/apps\/([^/]+)$/);
    for (const a of document.querySelectorAll('#nav a'))
      a.classList.toggle('current', a.dataset.view === (m ? 'apps' : hash.slice(1) || 'apps'));
    if (m) {
      try {
        return appView(decodeURIComponent(m[1]));
      } catch (e) { /* a malformed name: the overview */ }
    }
    if (hash === '/alerts') return alertsView();
    if (hash === '/events') return eventsView();
    return appsView();
  }

  function show() {
    if (!token()) return signOut('');
    generation++;
    $('login').hidden = true;
    $('nav').hidden = false;
    $('signout').hidden = false;
    flash('');
    view.replaceChildren();
    refresh = route();
    tick();
  }

  async function tick() {
    clearTimeout(timer);
    if (!token() || document.hidden) return;
    const gen = generation;
    try {
      const [alerts] = await Promise.all([call('alerts'), refresh()]);
      if (gen !== generation) return;
      const firing = alerts.alerts.filter((a) => a.state === 'firing').length;
      $('firing').textContent = firing;
      $('firing').hidden = !firing;
      $('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
      if ($('message').className === 'error poll') flash(''); // it came back
    } catch (e) {
      if (gen !== generation) return;
      if (e.status === 401 || e.status === 403)
        return signOut('The daemon refused the token: ' + e.message);
      flash(e.message, 'error poll');
    }
    clearTimeout(timer);
    timer = setTimeout(tick, REFRESH_MS);
  }

  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    generation++;
    clearTimeout(timer);
    routeCache.clear();
    view.replaceChildren();
    flash('');
    $('nav').hidden = true;
    $('signout').hidden = true;
    $('updated').textContent = '';
    $('login').hidden = false;
    $('login-error').textContent = message;
    $('token').value = '';
    $('token').focus();
  }

  $('login').addEventListener('submit', (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $('token').value.trim());
    $('login-error').textContent = '';
    show();
  });
  $('signout').addEventListener('click', () => signOut('Signed out.'));
  window.addEventListener('hashchange', () => token() && show());
  document.addEventListener('visibilitychange', () => document.hidden || tick());
  show();
})();
