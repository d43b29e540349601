        DECLARE
            statement_key text := statement_timestamp()::text || ' ' || md5(coalesce(current_query(), ''));
            who text := CASE WHEN current_setting('role') = 'none' THEN session_user::text
                             ELSE current_setting('role') END;
        BEGIN
            IF current_setting('landlord_tenancy.recorded', true) IS DISTINCT FROM statement_key THEN
                PERFORM set_config('landlord_tenancy.recorded', statement_key, true);
                RAISE LOG 'landlord tenancy: query without a tenant context by role %: %',
                    who, left(current_query(), 1000);
                IF current_setting('transaction_read_only') = 'off' THEN
                    BEGIN
                        INSERT INTO landlord_tenancy.violations (role, application, query)
                        VALUES (who, nullif(current_setting('application_name'), ''),
                                left(current_query(), 10000));
                    EXCEPTION WHEN OTHERS THEN
                        RAISE LOG 'landlord tenancy: could not record a violation: %', SQLERRM;
                    END;
                END IF;
            END IF;
        END;
        RETURN NULL;
