Feature: Pub/sub through maintenance
  A subscriber sends nothing: it only listens. Through a failover or a
  migration its connection stays where it is, and the cluster's proxy must
  follow the shard for it; through a rebind the client moves the connection,
  and must subscribe again on the new one before it lets the old one go.
  Either way the subscriber receives every message published, in order; a
  message may arrive twice while both connections of a handoff listen.

  Background:
    Given a standalone database

  Scenario Outline: PS1 a subscriber to a <kind> receives every message through <maintenance>
    Given a client "listener" with maintenance notifications enabled
    And a client "app" with maintenance notifications enabled
    And "listener" subscribes to a <kind>
    And "app" publishes steadily to the channel "listener" subscribed to
    When <maintenance step>
    Then "listener" received every message "app" published
    And the server cut off no connection of "listener"

    Examples:
      | kind            | maintenance | maintenance step                              |
      | channel         | a failover  | the database fails over                       |
      | channel         | a migration | the database's shard migrates to another node |
      | channel         | a rebind    | the database endpoint is rebound to another node |
      | sharded channel | a failover  | the database fails over                       |
      | sharded channel | a migration | the database's shard migrates to another node |
      | sharded channel | a rebind    | the database endpoint is rebound to another node |

  Scenario: PS2 negative control: a subscriber that does not subscribe again on its new connection misses what is published after a rebind
    Given a client "listener" with maintenance notifications enabled and these settings:
      | resubscribe | off |
    And a client "app" with maintenance notifications enabled
    And "listener" subscribes to a channel
    And "app" publishes steadily to the channel "listener" subscribed to
    When the database endpoint is rebound to another node
    Then every connection of "listener" hands off exactly once
    And the claim fails that "listener" received every message "app" published, saying "missed"

  Scenario: PS3 negative control: a subscriber with maintenance notifications disabled is cut off when the old endpoint closes
    Given a client "listener" with maintenance notifications disabled
    And a client "app" with maintenance notifications enabled
    And "listener" subscribes to a channel
    And "app" publishes steadily to the channel "listener" subscribed to
    When the database endpoint is rebound to another node
    Then the claim fails that the server cut off no connection of "listener", saying "grace_end"
