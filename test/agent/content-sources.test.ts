// Which members a pull asks for pieces, and which take object replicas.
import t from 'tap'
import { aliveMembers, pieceSources } from '../../agent/content-host.js'

const view = [
  { id: 'self', state: 'alive' },
  { id: 'a', state: 'alive' },
  { id: 's', state: 'suspect' },
  { id: 'd', state: 'dead' },
  { id: 'l', state: 'left' }
]

t.test('a pull asks alive members and suspects (busy members are suspected while they serve), never dead or left ones, nor itself', async t => {
  t.same(pieceSources(view, 'self'), ['a', 's'])
})

t.test('replicas go to alive members only', async t => {
  t.same(aliveMembers(view, 'self'), ['a'])
})
