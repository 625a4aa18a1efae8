import t from 'tap'
import { formatBytes } from '../../agent/cli-common.js'

t.test('bytes for people, in binary units with one decimal', async t => {
  t.equal(formatBytes(0), '0 B')
  t.equal(formatBytes(1023), '1023 B')
  t.equal(formatBytes(1024), '1.0 KiB')
  t.equal(formatBytes(69098332), '65.9 MiB')
  t.equal(formatBytes(3 * 1024 ** 3), '3.0 GiB')
  t.equal(formatBytes(5 * 1024 ** 5), '5120.0 TiB', 'the largest unit keeps growing')
})
