import t from 'tap'
import { complianceSuite, runtimeInstalled } from './compliance.js'

if (process.getuid?.() !== 0) t.plan(0, 'runc compliance needs root (rootless is covered by config tests)')
else if (!(await runtimeInstalled('runc'))) t.plan(0, 'runc is not installed (apt-get install runc)')
else complianceSuite(t, 'runc')
