// The page a browser without a session gets (with 401): how to log in.
// Static text only: nothing from the request is written into it.
export const LOGIN_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>bolt-agent dashboard: log in</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;color:#111;background:#fff}code{background:#eee;padding:.1rem .3rem}.why{color:#a00}</style>
</head><body><main>
<h1>bolt-agent dashboard</h1>
<!--why-->
<p>You are not logged in to this agent's dashboard. On the machine that runs the agent, run</p>
<p><code>bolt-agent ui</code></p>
<p>and open the one-time link it prints (add <code>--open</code> to open it in the browser). Each link works once, for two minutes.</p>
</main></body></html>
`
