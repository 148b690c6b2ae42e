-- Every raw send row, typed, with the reason it breaks the contract (null when it does not).
-- send_id is unique: of the otherwise valid rows sharing a send_id, the first landed
-- (by _file, _row) is kept and every later one is a 'duplicate send_id'.
with source as (
    select * from {{ source('raw', 'sends') }}
),

renamed as (
    select
        ---------- ids
        {{ clean_text('send_id') }} as send_id,
        {{ clean_text('user_id') }} as user_id,
        {{ clean_text('message_id') }} as message_id,
        ---------- facts
        lower({{ clean_text('channel') }}) as channel,
        {{ utc_timestamp('sent_ts') }} as sent_ts,
        ---------- lineage
        _file,
        _row,
        {{ contract_violation(
            required=['send_id', 'user_id', 'message_id', 'channel', 'sent_ts'],
            timestamps=['sent_ts'],
        ) }} as violation
    from source
),

checked as (
    select
        * exclude (violation),
        coalesce(
            violation,
            case
                when row_number() over (
                    partition by send_id order by violation is not null, _file, _row
                ) > 1 then 'duplicate send_id'
            end
        ) as reject_reason
    from renamed
)

select * from checked
