import t from 'tap'
import { complianceSuite, runtimeInstalled } from './compliance.js'

if (process.getuid?.() !== 0) t.plan(0, 'crun compliance needs root (rootless is covered by config tests)')
else if (!(await runtimeInstalled('crun'))) t.plan(0, 'crun is not installed (apt-get install crun)')
else complianceSuite(t, 'crun')
