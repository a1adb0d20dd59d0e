// One error_category class for every error enum, driven by a table of (value, message,
// condition), so a new domain is a table and not another hand-written category.
#pragma once

#include <boost/system/error_category.hpp>

#include <span>
#include <string>

namespace mimobox::common {

struct error_row {
    int value;
    const char* message;
    int condition = 0;  ///< a mimobox::vm::condition value, 0 for none
};

class table_category final : public boost::system::error_category {
public:
    table_category(const char* name, std::span<const error_row> rows) noexcept : name_(name), rows_(rows) {}

    const char* name() const noexcept override { return name_; }
    std::string message(int ev) const override {
        if (const auto* row = find(ev)) return row->message;
        return std::string("unknown ") + name_ + " error";
    }
    const error_row* find(int ev) const noexcept {
        for (const auto& row : rows_)
            if (row.value == ev) return &row;
        return nullptr;
    }

private:
    const char* name_;
    std::span<const error_row> rows_;
};

/// The condition a code of one of our categories belongs to; 0 for other categories.
inline int condition_of(const boost::system::error_code& code) noexcept {
    const auto* table = dynamic_cast<const table_category*>(&code.category());
    if (!table) return 0;
    const auto* row = table->find(code.value());
    return row ? row->condition : 0;
}

}  // namespace mimobox::common
