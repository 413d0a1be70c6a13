/** Where a guest with outside access finds its proxy: a user-mode guest forward, so the NIC stays restricted. */
export const outsideProxyAddress = { host: '10.0.2.100', port: 3128 }
