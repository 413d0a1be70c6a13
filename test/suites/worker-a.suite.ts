import { workerTests } from './machine.js'

workerTests('a')
