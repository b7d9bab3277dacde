"""smsgate's modem agent: one per host, driving its modems over AT and serving the bus.

Where things live:

- Sending: `port.PortWorker` takes a job when its port is idle; `send_path` decides how
  each job ends (the at-most-once claim in `sms_sending`, sent, back to the queue, failed,
  `unknown` `interrupted`, given back) through two protocols, so it is unit-tested without NATS;
  `port_records` builds what a port tells the bus of a message, `port_state` its state;
  `liveness` says whether a claim another agent holds may be decided here (its lease);
  `backlog` keeps what the bus cannot take yet in the `spool` on this host's disk;
  `sending.Sender` puts the parts on the modem (AT+CMGS); `shared_jobs` fetches jobs of
  `sms.send.any` for idle ports, `pinned_jobs` the ones pinned to its ports into their
  queues, from the agent's one consumer that `consumers` keeps in line with its ports;
  `pulls` is the pull request both fetchers publish.
- Receiving: `inbox.Inbox` reads what the modem announced or stored, one at a time;
  `receiving.Receiving` keeps the parts of long SMS across restarts (`reassembly` joins
  them) and publishes each SMS once it is durable.
- Delivery reports: `ledger.Ledger` keeps what every sent part awaits on the bus (the
  `sms_reports` bucket), matches reports through it and sweeps for `expired` and
  `unmatched`; `reports` holds its pure decisions; `delivery_reports.DeliveryReports` is
  one port's side of it.
- URCs: `at_parser` tells them from replies; `modem.Modem._on_urc` routes them (new SMS
  and reports to the inbox, `+CUSD` to `ussd`, registration to a poll, `RDY` to a
  re-initialisation).
- The modem itself: `modem.Modem` runs one modem's life over `link.ModemLink` (the
  channel, commands, state); `startup` initialises it, polls its health and climbs the
  recovery ladder; `replies` reads its answers; `cms` says what its errors mean.
"""
