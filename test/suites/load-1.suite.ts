import { loadTests } from './machine.js'

loadTests('1', Number(process.env.LOAD_TESTS ?? 50))
