import { isolatedGroupTest } from './group.js'

isolatedGroupTest('a', ['a', 'b'])
