// Runs the script-style interaction tests in testdata/*.txt (etcd-io/raft's
// datadriven format): each block is a command, `----`, and the expected
// output up to a blank line. REWRITE=1 regenerates the expected output.
import t from 'tap'
import { readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'
import { InteractionEnv } from '../../consensus/sim/interaction.js'

const dir = fileURLToPath(new URL('../../../test/consensus/testdata/', import.meta.url))
const rewrite = process.env.REWRITE === '1'

interface Block { command: string, expected: string, line: number }

function parse (text: string): { blocks: Block[], preamble: string[] } {
  const lines = text.split('\n')
  const blocks: Block[] = []
  const preamble: string[] = []
  let i = 0
  while (i < lines.length) {
    const l = lines[i] ?? ''
    if (l.trim() === '' || l.startsWith('#')) { if (blocks.length === 0) preamble.push(l); i++; continue }
    const command = l
    const line = i + 1
    i++
    if (lines[i] !== '----') throw new Error(`line ${i + 1}: expected ---- after "${command}"`)
    i++
    const out: string[] = []
    while (i < lines.length && (lines[i] ?? '') !== '') out.push(lines[i++] ?? '')
    blocks.push({ command, expected: out.join('\n'), line })
  }
  return { blocks, preamble }
}

for (const file of readdirSync(dir).filter(f => f.endsWith('.txt')).sort()) {
  t.test(file, async t => {
    const path = join(dir, file)
    const text = readFileSync(path, 'utf8')
    const { blocks } = parse(text)
    const env = new InteractionEnv()
    const rewritten: string[] = []
    for (const b of blocks) {
      const got = env.handle(b.command)
      if (rewrite) rewritten.push(`${b.command}\n----\n${got}${got === '' ? '' : '\n'}`)
      else t.equal(got, b.expected, `${file}:${b.line} ${b.command}`)
    }
    if (rewrite) {
      // Keep the leading comment, then every block followed by a blank line.
      const head = text.split('\n').filter((l, i, all) => all.slice(0, i + 1).every(x => x.startsWith('#') || x.trim() === '')).join('\n')
      writeFileSync(path, `${head.trimEnd()}\n\n${rewritten.join('\n')}`)
    }
  })
}
