import { loadTests } from './machine.js'

loadTests('4', Number(process.env.LOAD_TESTS ?? 50))
