import { isolatedGroupTest } from './group.js'

isolatedGroupTest('b', ['a', 'b'])
