import { workerTests } from './machine.js'

workerTests('b')
