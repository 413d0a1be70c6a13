import { loadTests } from './machine.js'

loadTests('2', Number(process.env.LOAD_TESTS ?? 50))
