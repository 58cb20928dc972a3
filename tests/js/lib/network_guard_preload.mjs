// Preloaded with `node --import` in front of a CLI we do not control (the mppx CLI): only the
// hosts listed in ALLOWED_URLS (comma-separated URLs) may be contacted through fetch; every
// other request fails at once with "network guard: refusing to contact <host>". Keeps tests
// off the public Tempo RPCs and faucet whether or not the machine can reach them.
import { guardNetwork } from './local_chain.mjs';

const urls = (process.env.ALLOWED_URLS ?? '').split(',').filter(Boolean);
guardNetwork(urls);
