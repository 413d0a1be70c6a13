import { loadTests } from './machine.js'

loadTests('3', Number(process.env.LOAD_TESTS ?? 50))
