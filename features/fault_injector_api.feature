Feature: Fault injector API
  The fault injector runs maintenance on request. Every action is accepted as
  "pending", then runs, then ends "success" or "failed" with an error that says
  what went wrong. Databases are created and deleted through it, and "rladmin
  status" lists them. The emulator serves the same API, so test suites written
  against the real service run unchanged against it.

  Scenario Outline: FI1a a <action> goes from pending through running to success
    Given a standalone database
    When a <action> is posted to the fault injector
    Then the fault injector accepted it as pending
    And its status went through running to success

    Examples:
      | action    |
      | failover  |
      | migration |
      | rebind    |

  @emulator
  Scenario Outline: FI2 <input> is refused with <status> and an error that says what is wrong, and the service keeps serving
    Given a standalone database
    When the fault injector is sent <input>
    Then it answers <status> with an error that says "<words>"
    And the fault injector still runs a failover of the database under test

    Examples:
      | input                                                  | status | words                     |
      | a body that is not JSON                                | 400    | not JSON                  |
      | a JSON array                                           | 422    | JSON object               |
      | an action without a type                               | 422    | type                      |
      | an unknown action type                                 | 422    | unknown action type       |
      | a failover without a bdb_id                            | 422    | bdb_id                    |
      | a bdb_id that is neither a number nor a numeric string | 422    | bdb_id                    |
      | a failover of a database that does not exist           | 422    | no database with bdb_id   |
      | a body of 1 MiB                                        | 413    | larger than 64 KiB        |
      | a status query for an action id that does not exist    | 404    | no action with id         |
      | a request to a route that does not exist               | 404    | the API has POST /action  |

  Scenario: FI1b a failed action carries an error that says why
    Given a standalone database
    When a database "fi1-single" without replication is created through the fault injector
    And a failover of "fi1-single" is posted to the fault injector
    Then it ends failed with an error that says "replica"
    When the database "fi1-single" is deleted through the fault injector
    Then rladmin status no longer lists "fi1-single"

  Scenario Outline: FI7 the <effect> effect of the trigger catalogue runs under traffic without an error
    Given a standalone database
    And a client "app" with 2 connections and maintenance notifications enabled
    And steady traffic from "app"
    When the fault injector produces the <effect> effect with its first trigger
    Then the traffic saw no errors
    And every acknowledged write is readable
    And the timeouts of "app" are back to their configured values

    Examples:
      | effect                     |
      | data_movement_no_conn_drop |
      | data_movement_conn_drop    |
      | conn_drop                  |

  Scenario: FI8 the dns_resolution_change effect is not announced: the old node drops its connections, and the client reconnects by the database's name to the new node
    A resolver's change reaches no client: no push, and the old node lets
    each connection it holds go at its next pause after a reply. The client
    comes back through the name, which leads to the new node now. A client
    that waits for each reply before it sends again loses nothing; one that
    multiplexes may have sent into the closing connection: as for any
    unannounced move, at most two requests per stream fail (see FA4).

    Given a standalone database
    And a client "app" with 2 connections and maintenance notifications enabled
    And steady traffic from "app"
    When the fault injector produces the dns_resolution_change effect with its first trigger
    Then "app" received no MOVING
    And every connection of "app" was dropped and connected again
    And the traffic saw at most 8 connection errors, and recovered
    And every acknowledged write is readable

  Scenario: FI3 a database is created, listed, used, and deleted
    Given a standalone database
    When a database "fi3-db" is created through the fault injector
    Then its description has bdb_id, endpoints, username, password, tls and raw_endpoints
    And its raw endpoint has addr, addr_type, dns_name, port, proxy_policy and uid
    And rladmin status lists "fi3-db"
    And a client can write and read through the endpoint of "fi3-db"
    When the database "fi3-db" is deleted through the fault injector
    Then rladmin status no longer lists "fi3-db"
    And the endpoint of "fi3-db" refuses connections

  Scenario: FI4 a port that is taken is refused in the words of a real cluster, and the next free port is accepted
    Given a standalone database
    When a database "fi4-db" is created through the fault injector on the port of the database under test
    Then the fault injector refuses it with an error that says "port_unavailable"
    And the fault injector refuses it with an error that says "Unavailable or invalid port"
    When a database "fi4-db" is created through the fault injector on the next free port
    Then rladmin status lists "fi4-db"
    And a client can write and read through the endpoint of "fi4-db"

  Scenario: FI5 a MOVING in host-name form names a host that resolves
    Given a standalone database
    And a client "app" with maintenance notifications enabled and endpoint type internal-fqdn
    When the database endpoint is rebound to another node
    Then "app" receives MOVING with a host name
    And the host name MOVING gave "app" resolves
    And every connection of "app" now uses the endpoint MOVING named

  Scenario: FI6 with maintenance notifications turned off on the cluster, an auto client is refused quietly and carries on
    Given a standalone database
    And maintenance notifications are turned off on the cluster
    And a client "app" with maintenance notifications auto
    And steady traffic from "app"
    When the database fails over
    Then "app" has maintenance notifications off because the server refused them
    And "app" received no notification
    And the traffic saw timeouts during the maintenance, and no other error
    And every acknowledged write is readable
    When a client "strict" with maintenance notifications enabled connects
    Then connecting "strict" fails with an error that says "disabled"

  @emulator
  Scenario: FI9 a rebind grace tuned through rladmin is the grace of the next rebind: the server keeps it, and the client hands off within it
    `rladmin tune cluster endpoint_rebind_propagation_grace_time` sets the
    grace of every rebind after it, cluster-wide (here 3 s, where this
    suite's rebinds otherwise have 2 s); the cluster's settings are brought
    back when the scenario ends.

    Given a standalone database
    And a client "app" with 2 connections and maintenance notifications enabled
    And steady traffic from "app"
    When rladmin tunes the cluster's endpoint rebind grace to 3 s
    And the database endpoint is rebound to another node
    Then the server gave the endpoint's last move a grace of 3 s
    And every connection of "app" hands off exactly once
    And the traffic saw no errors

  Scenario: FI10 a database busy with an action is not deleted: the refusal says db_busy, as the clients' suites that retry look for, and once the action ended it is deleted
    Given a standalone database
    When a database "fi10-db" is created through the fault injector
    And a failover of "fi10-db" is posted to the fault injector
    And the database "fi10-db" is deleted through the fault injector, retrying while it is busy
    Then the fault injector refuses it with an error that says "\"error_code\":\"db_busy\""
    And rladmin status no longer lists "fi10-db"
